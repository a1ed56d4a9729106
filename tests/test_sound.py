"""The built-in piano: real FluidSynth rendering into real audio files, offline (`sideman play
--audio`) and live (the box's --synth builtin on the file audio driver over JACK MIDI). Assertions
are what a listener hears: sound where someone plays, silence where nobody does, you on the left
and the AI on the right."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile

from audio_checks import SIDE_RATIO, WINDOW_S, rms_windows, sides, window_rms
from midi_probe import MidiProbe, wait_until
from music_fixtures import fixture_session, line, scale_walk
from sideman import messages as mm
from sideman.cli import main as sideman
from sideman.model.echo import SilentVoice
from sideman.sound import builtin
from sideman.sound.render import render_audio
from sideman.sound.soundfonts import SoundError, find_soundfont
from test_session_over_jack import perform


def notes_of(duet: mido.MidiFile, track: int) -> list[tuple[float, float]]:
    """(onset, release) in seconds of a duet track's notes (the file's one tempo: 120 BPM)."""
    t, started, spans = 0.0, {}, []
    for message in duet.tracks[track]:
        t += mido.tick2second(message.time, duet.ticks_per_beat, mido.bpm2tempo(120))
        if message.type == "note_on" and message.velocity > 0:
            started[message.note] = t
        elif message.type in ("note_on", "note_off") and message.note in started:
            spans.append((started.pop(message.note), t))
    return spans


def _write_two_phrases(path: Path) -> None:
    """Two 2-second phrases ten seconds apart: room for an answer, then silence."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    events = []
    for k, start_beat in enumerate((0, 20)):
        for i, pitch in enumerate(scale_walk(8, k, 60, 76)):
            on = (start_beat + i / 2) * 480
            events += [(int(on), mido.Message("note_on", note=pitch, velocity=80)),
                       (int(on + 200), mido.Message("note_off", note=pitch))]
    last = 0
    for tick, message in sorted(events, key=lambda e: e[0]):
        track.append(message.copy(time=tick - last))
        last = tick
    midi.save(path)


def test_a_rendered_duet_sounds_where_each_plays_on_their_side_and_is_silent_between(tmp_path):
    # A human phrase, two seconds of nobody, an AI phrase, then nothing: made here, in code.
    human = [(0.2 + 0.25 * i, p) for i, p in enumerate(scale_walk(6, 1, 60, 72))]
    ai = [(3.8 + 0.25 * i, p) for i, p in enumerate(scale_walk(6, 2, 60, 72))]
    messages = []
    for t, pitch in human:
        messages += [(t, mm.note_on(0, pitch, 90)), (t + 0.2, mm.note_off(0, pitch))]
    for t, pitch in ai:
        messages += [(t, mm.note_on(1, pitch, 90)), (t + 0.2, mm.note_off(1, pitch))]
    seconds = render_audio(tmp_path / "duet.wav", messages, ai_channel=1, tail_s=3.0)
    assert seconds == pytest.approx(5.25 + 3.0, abs=0.01)  # the last note-off, then the tail
    left, right, rate = rms_windows(tmp_path / "duet.wav")
    assert rate == 48000 and len(left) == pytest.approx(seconds / WINDOW_S, abs=1)
    human_l, human_r = window_rms(left, right, 0.2, 1.6)
    ai_l, ai_r = window_rms(left, right, 3.8, 5.2)
    loud = max(human_l, ai_r)
    assert human_l > SIDE_RATIO * human_r and human_l > 0.01, "the player's piano is on the left"
    assert ai_r > SIDE_RATIO * ai_l and ai_r > 0.01, "the AI's piano is on the right"
    # Nobody plays from 1.65 to 3.8 s, nor after 5.25 s: past a release (~0.6 s) that is silence.
    for start, end in ((2.5, 3.75), (6.5, 8.2)):
        quiet = max(window_rms(left, right, start, end))
        assert quiet < 0.01 * loud, f"sound at {start}-{end} s where nobody plays ({quiet:.4f} vs {loud:.4f})"


@pytest.mark.parametrize("suffix", [".flac", ".ogg"])
def test_flac_and_ogg_are_written_and_read_back(tmp_path, suffix):
    messages = [(0.1, mm.note_on(1, 60, 100)), (0.6, mm.note_off(1, 60))]
    path = tmp_path / f"answer{suffix}"
    seconds = render_audio(path, messages, ai_channel=1, tail_s=1.0)
    info = soundfile.info(path)
    assert (info.format, info.channels, info.samplerate) == ({".flac": "FLAC", ".ogg": "OGG"}[suffix], 2, 48000)
    assert info.duration == pytest.approx(seconds, abs=0.05)
    left, right, _ = rms_windows(path)
    assert right[2:10].max() > 0.01 and right[-4:].max() < 0.001  # the note, then it has rung out
    assert not list(tmp_path.glob(".*partial*")), "no half-written file is left beside it"


def test_an_unknown_audio_format_or_missing_soundfont_is_one_clear_line(tmp_path):
    with pytest.raises(SoundError, match=r"\.wav, \.flac or \.ogg"):
        render_audio(tmp_path / "duet.mp3", [], ai_channel=1)
    with pytest.raises(SoundError, match="soundfont .*nope.sf2 not found"):
        render_audio(tmp_path / "duet.wav", [], ai_channel=1, soundfont=tmp_path / "nope.sf2")
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00not a soundfont")
    with pytest.raises(SoundError, match="not a soundfont FluidSynth can read"):
        render_audio(tmp_path / "duet.wav", [], ai_channel=1, soundfont=broken)
    assert not (tmp_path / "duet.wav").exists()


def test_sideman_play_renders_the_duet_it_writes(tmp_path, capsys):
    source = tmp_path / "phrases.mid"
    _write_two_phrases(source)
    code = sideman(["play", str(source), "--out", str(tmp_path / "duet.mid"), "--audio", str(tmp_path / "duet.wav"),
                    "--voice", "markov", "--seed", "2", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["answers"] == 2 and summary["audio"] == str(tmp_path / "duet.wav")
    duet = mido.MidiFile(tmp_path / "duet.mid")
    human, ai = notes_of(duet, 0), notes_of(duet, 1)
    assert len(ai) == summary["ai_notes"] > 0
    left, right, _ = rms_windows(tmp_path / "duet.wav")
    # Where the AI answers alone (after the call's last release) its side is the louder one.
    answer_start, answer_end = min(a for a, _ in ai), max(b for _, b in ai if b < 9.0)
    assert answer_start > max(b for _, b in human if b < 9.0)
    ai_l, ai_r = window_rms(left, right, answer_start + 0.3, answer_end)
    assert ai_r > SIDE_RATIO * ai_l > 0
    # Silence where neither plays: the longest stretch with no note sounding, after the release.
    spans = sorted(human + ai)
    gaps, reach = [], spans[0][1]
    for onset, release in spans[1:]:
        if onset > reach:
            gaps.append((reach, onset))
        reach = max(reach, release)
    start, end = max(gaps, key=lambda g: g[1] - g[0])
    assert end - start > 2.0, gaps
    quiet = max(window_rms(left, right, start + 1.0, end - 0.05))
    assert quiet < 0.01 * ai_r, f"sound where nobody plays ({start:.2f}-{end:.2f} s)"


def test_sideman_play_with_a_bad_audio_name_says_so_and_keeps_the_midi(tmp_path, capsys):
    source = tmp_path / "phrases.mid"
    _write_two_phrases(source)
    code = sideman(["play", str(source), "--out", str(tmp_path / "duet.mid"), "--audio", str(tmp_path / "duet.mp3"),
                    "--voice", "markov"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(errors) == 1 and ".wav, .flac or .ogg" in errors[0]
    assert (tmp_path / "duet.mid").exists()


# --- live: the box plays through the built-in piano ---------------------------------------------

def _box_plays_a_phrase(make_box, probe, audio_file: Path, voice) -> list[str]:
    said = []
    box = make_box(voice=voice, synth="builtin", audio_driver="file", audio_file=str(audio_file))
    box.announce = said.append
    probe.connect()
    perform(probe, line(0.3, scale_walk(8, 4, 60, 72), 0.25), settle_s=0.1)
    probe.wait_for(lambda m: len(m) == 3 and m[0] == 0x91 and m[2] > 0, timeout_s=4.0)
    time.sleep(2.5)  # the answer plays out
    box.stop()  # closes the file
    return said


@pytest.mark.jack
def test_the_box_plays_your_notes_and_its_answer_through_the_builtin_piano(make_box, probe, tmp_path):
    said = _box_plays_a_phrase(make_box, probe, tmp_path / "live.wav",
                               fixture_session("call-response", answer_length=1.0))
    assert any(m[0] == 0x91 and m[2] > 0 for m in probe.messages() if len(m) == 3), "the AI answered over MIDI"
    you, ai = sides(tmp_path / "live.wav")
    # Your phrase sounds on the left; the answer, after it and alone, on the right.
    assert len(you) >= 5 and len(ai) >= 5, (len(you), len(ai))
    assert np.median(ai) > np.median(you), "the answer comes after the call"
    assert not any("warning" in line for line in said), said


@pytest.mark.jack
def test_with_a_voice_that_never_plays_the_right_side_never_leads(make_box, probe, tmp_path):
    _box_plays_a_phrase(make_box, probe, tmp_path / "thru.wav", SilentVoice())
    you, ai = sides(tmp_path / "thru.wav")
    assert len(you) >= 5, "the player's notes were heard (so the file did record)"
    assert len(ai) == 0


@pytest.mark.jack
def test_auto_plays_the_builtin_piano_only_while_no_hardware_synth_is_connected(jack_server, data_dir, probe, tmp_path):
    from sideman.box import Box, BoxConfig

    said = []
    box = Box(BoxConfig(backend="jack", autoconnect=r"^stagesynth", hotplug_interval_s=60, capture=False,
                        synth="auto", audio_driver="file", audio_file=str(tmp_path / "auto.wav")),
              voice=SilentVoice(), announce=said.append)
    box.start()
    try:
        assert "built-in piano" in box.outputs.names()
        assert [s for s in said if s.startswith("sound : built-in piano on")]
        probe.connect()
        probe.send(mm.note_on(0, 60, 90))  # held while the synth is plugged in
        builtin_slot = next(s for s in box.outputs.slots if s.name == "built-in piano")
        assert probe.wait_for(lambda m: m == (0x90, 60, 90))
        # With thru patched the probe hears the note straight through JACK, possibly before the
        # box's input thread has handed it to the built-in piano: wait for that slot too.
        assert wait_until(lambda: builtin_slot.sounding_notes() == [(0, 60)], timeout_s=2.0), \
            builtin_slot.sounding_notes()
        synth = MidiProbe("stagesynth").open_virtual("keys", "sound")
        try:
            box.watcher.reconcile_now()
            assert "built-in piano" not in box.outputs.names()
            assert [s for s in said if s.startswith("sound : built-in piano off: stagesynth")], said
            assert builtin_slot.sounding_notes() == [], "the held note was ended on the built-in piano"
        finally:
            synth.close()  # unplugged: the built-in piano plays again
        box.watcher.reconcile_now()
        assert "built-in piano" in box.outputs.names()
        assert len([s for s in said if s.startswith("sound : built-in piano on")]) == 2
    finally:
        box.stop()


@pytest.mark.jack
@pytest.mark.parametrize("problem, config, says", [
    ("no soundfont", dict(soundfont="/nowhere/piano.sf2", audio_driver="file"), "soundfont /nowhere/piano.sf2 not found"),
    ("no audio device", dict(audio_driver="alsa"), "the alsa audio output would not open"),
])
def test_a_missing_soundfont_or_audio_device_is_one_line_and_the_box_still_plays(make_box, probe, tmp_path,
                                                                                   problem, config, says):
    said = []
    box = make_box(voice=fixture_session("call-response"), synth="builtin", audio_file=str(tmp_path / "x.wav"),
                   **config)
    assert "built-in piano" not in box.outputs.names()
    box.announce = said.append
    # The one line was said at start (make_box's announce is silent): check the same path again.
    box._open_builtin_piano()
    assert said == [f"warning: {says}; playing MIDI only"] if problem == "no soundfont" else \
        len(said) == 1 and says in said[0] and said[0].endswith("playing MIDI only")
    probe.connect()
    probe.send(mm.note_on(0, 62, 70))
    assert probe.wait_for(lambda m: m == (0x90, 62, 70)), "thru still plays"
    probe.send(mm.note_off(0, 62))


def test_without_the_fluidsynth_library_the_message_says_what_to_install(monkeypatch):
    import sys

    from sideman.sound.piano import load_fluidsynth

    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # import fails as on a machine without it
    with pytest.raises(SoundError, match="apt install libfluidsynth3"):
        load_fluidsynth()


def test_auto_audio_finds_pipewire_pulseaudio_alsa_or_says_there_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    monkeypatch.setattr(builtin.glob, "glob", lambda pattern: [])
    driver, why = builtin.detect_audio_driver(private_jack=True)
    assert driver is None and "no audio output" in why
    monkeypatch.setattr(builtin.glob, "glob", lambda pattern: ["/dev/snd/pcmC0D0p"])
    assert builtin.detect_audio_driver(private_jack=True)[0] == "alsa"
    (tmp_path / "pulse").mkdir()
    (tmp_path / "pulse" / "native").touch()
    assert builtin.detect_audio_driver(private_jack=True) == ("pulseaudio", "PulseAudio")
    (tmp_path / "pipewire-0").touch()
    assert builtin.detect_audio_driver(private_jack=True) == ("pulseaudio", "PipeWire (through its PulseAudio server)")


def test_the_box_service_leaves_the_builtin_piano_off_unless_asked(data_dir):
    from sideman import appliance
    from sideman.cli import build_parser
    from sideman.panel.settings import Settings, load_settings, save_settings

    def synth(argv, service):
        return appliance.box_config(build_parser().parse_args(["run", *argv]), Settings(), service=service).synth

    assert synth([], service=False) == "auto"
    assert synth([], service=True) == "none"
    assert synth(["--synth", "builtin"], service=True) == "builtin"
    saved = Settings(synth="none")
    save_settings(saved)
    assert load_settings().synth == "none"


def test_the_installed_soundfont_is_found():
    assert find_soundfont().suffix in (".sf2", ".sf3")


@pytest.mark.jack
def test_the_audio_bench_counts_cycles_beside_the_attack_and_leaves_no_server(jack_server):
    import subprocess

    from sideman_bench.audio import run_audio_bench

    result = run_audio_bench(periods=(256,), notes=3)
    row = result["jack"][0]
    assert result["baseline_offline_attack"]["n"] == 3
    assert row["cycles_to_sound"]["n"] == 3 and row["cycles_to_sound"]["p50"] >= 1
    assert row["to_the_speaker_worst_ms"] >= row["to_the_speaker_typical_ms"] > row["sound_card_buffer_ms"]
    assert os.environ["JACK_DEFAULT_SERVER"] == jack_server.name
    servers = subprocess.run(["pgrep", "-af", "sideman-bench-audio"], capture_output=True, text=True).stdout
    assert "jackd" not in servers, servers


def test_sample_duets_are_rendered_from_parts_written_in_code(tmp_path):
    from sideman_train.cli import main as sideman_train

    assert sideman_train(["sample-duets", "--out", str(tmp_path), "--voice", "markov", "--format", "flac"]) == 0
    for name in ("call-response", "comping", "duet"):
        duet = mido.MidiFile(tmp_path / f"{name}.mid")
        ai = notes_of(duet, 1)
        assert ai, f"{name}: the AI played"
        left, right, _ = rms_windows(tmp_path / f"{name}.flac")
        assert right.max() > 0.01 and left.max() > 0.01
        assert (tmp_path / f"{name}.png").exists()


@pytest.mark.jack
def test_auto_finds_a_running_jack_server_and_your_notes_sound_there(make_box, probe, monkeypatch, tmp_path):
    import jack

    from sideman.sound.builtin import JACK_CLIENT_NAME

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # a desktop's PulseAudio would come first
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    box = make_box(voice=SilentVoice(), synth="auto")  # audio driver auto: the test's JACK server
    assert "built-in piano" in box.outputs.names()
    listener = jack.Client("sound-listener", no_start_server=True)
    loudest = {"left": 0.0, "right": 0.0}
    ports = {side: listener.inports.register(side) for side in loudest}

    @listener.set_process_callback
    def process(frames):
        for side, port in ports.items():
            loudest[side] = max(loudest[side], float(np.abs(port.get_array()).max()))

    listener.activate()
    try:
        for side in loudest:
            listener.connect(f"{JACK_CLIENT_NAME}:{side}", ports[side])
        time.sleep(0.3)
        assert max(loudest.values()) < 1e-4, "silence before anyone plays"
        probe.connect()
        probe.send(mm.note_on(0, 64, 100))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and loudest["left"] < 0.01:
            time.sleep(0.02)
        probe.send(mm.note_off(0, 64))
        assert loudest["left"] > 0.01 and loudest["left"] > loudest["right"], loudest
    finally:
        listener.deactivate()
        listener.close()
