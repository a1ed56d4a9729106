"""`sideman-bench memory`: the soak's player into a voice on a simulated clock, RssAnon each
simulated minute. It must see a voice that leaks, and not see one where there is none."""

import json
import mmap

from sideman_bench.memory import simulate_set, summarize
from sideman_bench.soak import MODE_ORDER
from sideman.play.voices import make_voice


class LeakyVoice:
    """The Markov session, keeping 2 MB more for every phrase it hears end."""

    def __init__(self):
        self.session = make_voice("markov", MODE_ORDER[0], seed=1)
        self.kept = []
        self.phrases = 0

    def set_mode(self, mode, t_s):
        self.session.set_mode(mode, t_s)

    def hear(self, message, t_ns):
        return self.session.hear(message, t_ns)

    def tick(self, t_ns):
        out = self.session.tick(t_ns)
        if len(self.session.log.phrases) != self.phrases:
            self.phrases = len(self.session.log.phrases)
            # Its own mapping, every page touched: the allocator cannot hand it memory that an
            # earlier test freed (which a bytearray got in CI, and the leak never showed).
            kept = mmap.mmap(-1, 2 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)   # private: RssAnon
            for offset in range(0, len(kept), mmap.PAGESIZE):
                kept[offset] = 1
            self.kept.append(kept)
        return out


def test_the_memory_bench_sees_a_leak_in_the_last_half_and_no_leak_in_the_markov_voice():
    leaky = summarize(simulate_set(LeakyVoice(), minutes_per_mode=0.8))
    plain = summarize(simulate_set(make_voice("markov", MODE_ORDER[0], seed=1), minutes_per_mode=0.8))
    assert leaky["simulated_minutes"] >= 7 and plain["simulated_minutes"] >= 7
    # Dozens of phrases in 8 minutes, 2 MB each: the leak keeps growing in the last half. (In MB:
    # this test process's own size, and so the percentages, depend on what ran before it.)
    def last_half_mb(result):
        return result["rss_anon_mb"]["end"] - result["rss_anon_mb"]["half"]

    assert last_half_mb(leaky) > 20
    assert last_half_mb(plain) < 5
    assert leaky["growth_in_last_half_pct"] > plain["growth_in_last_half_pct"]


def test_the_memory_bench_command_runs_each_voice_in_a_process_of_its_own(capsys):
    from sideman_bench.cli import main

    assert main(["memory", "--minutes-per-mode", "0.6", "--voice", "markov", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["voices"]["markov"]
    assert result["voice"] == "markov" and result["simulated_minutes"] >= 5
    # A fresh process holds tens of MB of its own, not this test process's hundreds.
    assert 20 < result["rss_anon_mb"]["end"] < 200
