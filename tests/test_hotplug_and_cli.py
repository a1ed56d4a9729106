"""Hot-plug, the command line and `make run`, over a real JACK server."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audio_checks import sides
from midi_probe import MidiProbe, sounding_after
from sideman.box import Box, BoxConfig
from sideman.model.echo import SilentVoice

pytestmark = pytest.mark.jack
ROOT = Path(__file__).resolve().parents[1]


def _env(data_dir):
    return dict(os.environ, SIDEMAN_DATA_DIR=str(data_dir), PYTHONPATH=os.pathsep.join(sys.path))


def _sideman(*args, data_dir, timeout=30):
    return subprocess.run([sys.executable, "-m", "sideman", *args], capture_output=True, text=True,
                          env=_env(data_dir), timeout=timeout)


def test_hardware_is_followed_as_it_is_plugged_unplugged_and_replugged(jack_server, data_dir):
    said = []
    box = Box(BoxConfig(backend="jack", autoconnect=r"^gigkbd", hotplug_interval_s=0.2, capture=False),
              voice=SilentVoice(), announce=said.append)
    box.start()
    try:
        for attempt in range(2):  # plug, unplug, plug again
            keyboard = MidiProbe("gigkbd").open_virtual("keys", "sound")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len([s for s in said if "connected" in s]) < 2 * (attempt + 1):
                time.sleep(0.05)
            keyboard.round_trip()  # the box's new connections are live
            keyboard.send((0x90, 60 + attempt, 99))
            assert keyboard.wait_for(lambda m: m == (0x90, 60 + attempt, 99)), f"not reconnected ({said})"
            keyboard.send((0x80, 60 + attempt, 0))
            keyboard.close()  # unplug
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len([s for s in said if "lost" in s]) < 2 * (attempt + 1):
                time.sleep(0.05)
            assert len([s for s in said if "lost" in s]) == 2 * (attempt + 1), said
    finally:
        box.stop()


def test_missing_port_is_a_one_line_error(jack_server, data_dir):
    result = _sideman("run", "--backend", "jack", "--input", "no-such-keyboard", data_dir=data_dir)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("sideman: error")]
    assert errors == [errors[0]] and "no MIDI input port matches 'no-such-keyboard'" in errors[0]


@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="this machine has an ALSA sequencer")
def test_alsa_requested_without_sequencer_says_what_to_do(data_dir):
    result = _sideman("run", "--backend", "alsa", data_dir=data_dir)
    assert result.returncode == 2
    assert "ALSA sequencer not available" in result.stderr and "modprobe snd-seq" in result.stderr


def test_ports_lists_other_clients_but_not_ours(jack_server, data_dir):
    keyboard = MidiProbe("stagepiano").open_virtual("keys", "sound")
    try:
        listing = json.loads(_sideman("ports", "--backend", "jack", "--json", data_dir=data_dir).stdout)
        assert listing["backend"] == "jack"
        assert any(n.startswith(keyboard.name) and n.endswith(":keys") for n in listing["inputs"])
        assert any(n.endswith(":sound") for n in listing["outputs"])
        assert not [n for n in listing["inputs"] + listing["outputs"] if n.startswith("sideman")]
    finally:
        keyboard.close()


def test_make_run_passes_a_note_through_and_sessions_lists_the_duet(jack_server, data_dir):
    """The README's first command, as a musician runs it (with JACK standing in for hardware, and
    the built-in piano recording to a file instead of speakers)."""
    env = _env(data_dir)
    heard = data_dir.parent / "make-run.wav"
    run = subprocess.Popen(["make", "-s", "run", f"ARGS=--backend jack --no-autoconnect --audio-driver file "
                                                 f"--audio-file {heard}"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           start_new_session=True)
    probe = MidiProbe()
    try:
        said = []
        for line in run.stdout:
            said.append(line.strip())
            if line.startswith("ready"):
                break
        assert any(s.startswith("input : sideman:in") for s in said), said
        assert any(s.startswith("output: sideman-out:out") for s in said), said
        # No synth attached: the built-in piano plays (auto), and says so.
        assert any(s.startswith("sound : built-in piano on: no hardware synth connected") for s in said), said
        probe.connect()
        for pitch in (64, 67, 71):  # a short phrase; the default voice answers it when it ends
            probe.send((0x90, pitch, 88))
            assert probe.wait_for(lambda m, p=pitch: m == (0x90, p, 88)), "note did not pass through"
            time.sleep(0.15)
            probe.send((0x80, pitch, 0))
        assert probe.wait_for(lambda m: m[0] == 0x91 and m[2] > 0, timeout_s=5), "no answer on channel 2"
        os.killpg(run.pid, signal.SIGINT)
        run.wait(timeout=15)
        assert sounding_after(probe.messages()) == set()
        # Both pianists were heard: your phrase leads on the left, the answer's start on the right.
        you, ai = sides(heard)
        assert len(you) >= 3 and len(ai) >= 1, (len(you), len(ai))
    finally:
        probe.close()
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    listing = json.loads(_sideman("sessions", "--json", data_dir=data_dir).stdout)
    assert len(listing) == 1
    assert listing[0]["human_notes"] == 3 and listing[0]["ai_notes"] >= 1


def test_thru_bench_reports_baseline_and_added_latency(jack_server):
    """Runs the benchmark code path (a few notes); asserts the report adds up, not speed.
    (The non-real-time dummy server may drop a note under load, on either path: the report counts it.)"""
    from sideman_bench.thru import run_thru_bench

    result = run_thru_bench(notes=40, period=64)
    assert result["lost_direct"] + result["direct_latency"]["n"] == 40
    assert result["lost_via_sideman"] + result["via_sideman_latency"]["n"] == 40
    # Every note heard on both paths gives one added latency, and no note arrives before it was sent.
    assert result["added_latency"]["n"] >= 40 - result["lost_direct"] - result["lost_via_sideman"] > 0
    assert result["direct_latency"]["p50_ms"] >= 0 and result["via_sideman_latency"]["p50_ms"] >= 0
    # The verdict is the goal applied to the figures it prints.
    added, goal = result["added_latency"], result["goal_added_p99_ms"]
    assert result["meets_goal"] == (added["p99_ms"] <= goal and result["added_jitter_p99_minus_p50_ms"] <= 0.3)
    assert result["jack_period_ms"] == pytest.approx(1.3333, abs=1e-3)


def test_thru_while_the_ai_answers_is_measured_beside_thru_only(jack_server):
    """Runs the benchmark's code path (two phrases per voice): the AI answers in the rests, and
    the report counts every player note on each path."""
    from sideman_bench.thru import run_answering_thru_bench

    result = run_answering_thru_bench(notes=32, voices=("markov", "none"))
    answering, thru_only = result["runs"]["markov"], result["runs"]["none"]
    assert answering["ai_note_ons"] > 0 and thru_only["ai_note_ons"] == 0
    for run in (answering, thru_only):
        assert run["note_ons_sent"] == 32
        assert run["lost_note_ons"]["via_sideman"] + run["added_latency"]["n"] <= 32
        assert run["added_latency"]["n"] > 0
    assert "markov" in result["added_p99_over_voice_none_ms"]


def test_a_short_soak_plays_every_mode_in_turn_and_leaves_no_note_sounding():
    """`sideman-bench soak` for 45 s (the Markov voice, to start fast): call-response first, then
    each other mode; a report every 15 s; the box answers, and nothing sounds once it has stopped."""
    from sideman_bench.soak import MODE_ORDER, run_soak_bench

    reports = []
    result = run_soak_bench(minutes=0.75, report_minutes=0.25, voice="markov", on_report=reports.append)
    assert result["modes_played"] == list(MODE_ORDER)
    assert [r["minute"] for r in reports] == [r["minute"] for r in result["reports"]] and len(reports) == 3
    assert result["player_note_ons_sent"] > 20 and result["answers"] >= 1 and result["ai_note_ons"] > 0
    assert result["ai_notes_stuck_after_stop"] == 0
    assert result["voice_errors"] == 0
    assert sum(r["lost_thru"]["via_sideman"] for r in reports) == result["lost_thru"]["via_sideman"]
    assert result["lost_thru"]["via_sideman_beyond_direct"] <= result["lost_thru"]["via_sideman"]
    assert isinstance(result["rss_private_growth_in_last_half_pct"], float)
    assert result["rss_mb"]["end"] > 50 and 20 < result["rss_private_mb"]["end"] < result["rss_mb"]["end"]


def test_the_soak_tells_what_the_box_lost_from_what_never_reached_it():
    """A message missing on both listeners was lost before the paths split (the player's port, the
    server): it is not Sideman's. One the direct listener got and the box's did not is."""
    from collections import Counter

    from sideman_bench.soak import _lost_by_paths

    a, b, c = (0x90, 60, 90), (0x80, 60, 0), (0x90, 64, 80)
    sent = Counter({a: 3, b: 3, c: 1})
    arrived = {"direct": Counter({a: 2, b: 3, c: 1}), "via": Counter({a: 2, b: 2})}
    assert _lost_by_paths(sent, arrived) == {"direct": 1, "via": 3, "beyond": 2}
