"""The built-in piano: FluidSynth playing the duet live (when no synth is attached) and rendering
duets to audio files."""
