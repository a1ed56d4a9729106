"""Voices: what the AI plays. The Markov voice and the transformer arrive in later issues."""
