"""Settings and presets files: round trips, atomic writes, and a bad file refused as a whole with a
message that names the problem (the caller keeps what it had)."""

from __future__ import annotations

import argparse

import pytest

from sideman import appliance
from sideman.controls import add_control_flags, defaults
from sideman.panel.presets import Preset, PresetBank
from sideman.panel.settings import Settings, SettingsError, load_settings, save_settings, settings_path


def test_settings_round_trip():
    settings = Settings()
    settings.controls["density"] = 0.8
    settings.mode = "trade"
    settings.styles = "mehldau,tatum"
    settings.cc_map = {21: "density", 22: "mode"}
    path = save_settings(settings)
    again = load_settings(path)
    assert again.controls == settings.controls
    assert (again.mode, again.styles, again.cc_map) == ("trade", "mehldau,tatum", {21: "density", 22: "mode"})


def test_no_file_means_defaults():
    assert load_settings().controls == defaults()


@pytest.mark.parametrize("text, words", [
    ("mode = \"bebop\"\n", "unknown mode 'bebop'"),
    ("[controls]\ndensity = 3.0\n", "density = 3 is outside 0..1"),
    ("[controls]\nloudness = 1\n", "unknown control 'loudness'"),
    ("[controls]\ndensity = \"lots\"\n", "is not a number"),
    ("[cc_map]\n64 = \"density\"\n", "CC 64 cannot be mapped"),
    ("[cc_map]\n21 = \"swing\"\n", "unknown control 'swing'"),
    ("colour = 1\n", "unknown setting(s) colour"),
    ("mode = \n", "not valid TOML"),
    ("\udcff\udcfe[controls]", "not a text file"),
])
def test_bad_settings_files_are_refused_with_the_reason(text, words):
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert words in str(caught.value) and str(path) in str(caught.value)


def test_the_box_starts_on_defaults_beside_a_bad_file_and_keeps_a_copy_of_it():
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[controls]\ndensity = 3.0\n")
    said = []
    settings, message = appliance.saved_settings(said.append)
    assert settings.controls == defaults()
    assert "density = 3 is outside" in message and said
    assert (path.parent / "settings.toml.rejected").read_text() == "[controls]\ndensity = 3.0\n"
    assert path.read_text() == "[controls]\ndensity = 3.0\n"  # untouched until the player saves


def test_flags_win_over_saved_settings_and_saved_settings_over_defaults():
    saved = Settings()
    saved.controls["density"] = 0.9
    saved.controls["temperature"] = 1.4
    saved.mode = "comp"
    parser = argparse.ArgumentParser()
    from sideman.cli import _add_run_flags

    _add_run_flags(parser)
    args = parser.parse_args(["--temperature", "0.5"])
    config = appliance.box_config(args, saved)
    assert config.controls["temperature"] == 0.5 and config.controls["density"] == 0.9
    assert config.mode == "comp" and config.style == "mehldau"
    assert config.controls is saved.controls


def test_presets_round_trip_by_program_and_keep_only_musical_controls(tmp_path):
    bank = PresetBank(tmp_path)
    settings = Settings()
    settings.controls["density"] = 0.2
    settings.controls["ai_channel"] = 5
    preset = Preset.from_settings("Ballad & Brush", bank.next_free_program(), settings)
    path = bank.save(preset)
    assert path.name == "000-ballad-brush.toml"
    loaded = bank.by_program(0)
    assert loaded == preset and "ai_channel" not in loaded.controls
    assert bank.next_free_program() == 1
    # Saved again on the same number under a new name: the old file goes, once the new one is there.
    bank.save(Preset("Up", 0, "comp", "mehldau", {"density": 0.9}))
    assert [p.name for p in bank.files()] == ["000-up.toml"]
    recalled = bank.by_program(0).apply_to(settings)
    assert recalled.controls["density"] == 0.9 and recalled.controls["ai_channel"] == 5


def test_a_preset_with_rig_controls_or_a_bad_program_is_refused(tmp_path):
    bank = PresetBank(tmp_path)
    (tmp_path / "003-rig.toml").write_text('program = 3\n[controls]\nai_channel = 4\n')
    (tmp_path / "004-nope.toml").write_text('program = 300\n')
    with pytest.raises(SettingsError, match="ai_channel belong to the rig"):
        bank.by_program(3)
    presets, problems = bank.list()
    assert presets == [] and len(problems) == 2


def test_add_control_flags_leaves_unset_flags_as_none():
    parser = argparse.ArgumentParser()
    add_control_flags(parser)
    args = parser.parse_args([])
    assert args.density is None
