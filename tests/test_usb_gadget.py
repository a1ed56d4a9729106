"""The USB-MIDI gadget's configfs layout, on a plain directory tree standing in for configfs and
/sys/class/udc (real configfs needs root and libcomposite)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sideman.service.usb_gadget import GadgetError, gadget_down, gadget_up, main

UDC = "3550000.usb"


@pytest.fixture
def sysfs(tmp_path):
    configfs = tmp_path / "config"
    (configfs / "usb_gadget").mkdir(parents=True)
    devices = tmp_path / "devices" / "platform" / UDC
    devices.mkdir(parents=True)
    udc_class = tmp_path / "class" / "udc"
    udc_class.mkdir(parents=True)
    (udc_class / UDC).symlink_to(devices)  # /sys/class/udc entries are links to the device
    return configfs, udc_class


def snapshot(root: Path) -> dict:
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                tree[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                tree[rel] = ("dir",)
            else:
                tree[rel] = ("file", path.read_text())
    return tree


def test_up_builds_the_libcomposite_layout_and_binds(sysfs):
    configfs, udc_class = sysfs
    done = gadget_up(configfs, udc_class=udc_class, serial="SM-0001")
    g = configfs / "usb_gadget" / "sideman"
    read = lambda rel: (g / rel).read_text()  # noqa: E731
    assert read("idVendor") == "0x1209" and read("idProduct") == "0x0001"
    assert read("bcdDevice") == "0x0100" and read("bcdUSB") == "0x0200"
    assert read("strings/0x409/manufacturer") == "Sideman"
    assert read("strings/0x409/product") == "Sideman jazz piano box"
    assert read("strings/0x409/serialnumber") == "SM-0001"
    midi = {name: read(f"functions/midi.usb0/{name}") for name in ("id", "in_ports", "out_ports", "buflen", "qlen")}
    assert midi == {"id": "HostUSB", "in_ports": "1", "out_ports": "1", "buflen": "512", "qlen": "32"}
    assert read("configs/c.1/strings/0x409/configuration") == "MIDI"
    assert read("configs/c.1/MaxPower") == "2" and read("configs/c.1/bmAttributes") == "0xc0"
    link = g / "configs" / "c.1" / "midi.usb0"
    assert link.is_symlink() and link.resolve() == (g / "functions" / "midi.usb0").resolve()
    assert read("UDC") == UDC
    # The binding comes last: the host must never see a half-built device.
    assert done[-1] == f"{g / 'UDC'} = {UDC}"
    assert "\n" not in read("functions/midi.usb0/id")   # f_midi keeps a newline as part of the id


def test_up_twice_changes_nothing(sysfs):
    configfs, udc_class = sysfs
    gadget_up(configfs, udc_class=udc_class, serial="SM-0001")
    before = snapshot(configfs)
    assert gadget_up(configfs, udc_class=udc_class, serial="SM-0001") == []
    assert snapshot(configfs) == before


def test_up_completes_a_half_built_gadget(sysfs):
    configfs, udc_class = sysfs
    gadget_up(configfs, udc_class=udc_class, serial="SM-0001")
    g = configfs / "usb_gadget" / "sideman"
    (g / "UDC").write_text("\n")                         # unbound ...
    (g / "configs" / "c.1" / "midi.usb0").unlink()       # ... and the function unlinked
    done = gadget_up(configfs, udc_class=udc_class, serial="SM-0001")
    assert len(done) == 2 and (g / "configs" / "c.1" / "midi.usb0").is_symlink()
    assert (g / "UDC").read_text() == UDC


def test_an_explicit_udc_wins_and_rebinding_moves_it(sysfs):
    configfs, udc_class = sysfs
    gadget_up(configfs, udc="dummy_udc.0", udc_class=udc_class, serial="x")
    g = configfs / "usb_gadget" / "sideman"
    assert (g / "UDC").read_text() == "dummy_udc.0"
    gadget_up(configfs, udc_class=udc_class, serial="x")
    assert (g / "UDC").read_text() == UDC


def test_down_unbinds_and_removes_everything_in_order(sysfs):
    configfs, udc_class = sysfs
    gadget_up(configfs, udc_class=udc_class, serial="SM-0001")
    g = configfs / "usb_gadget" / "sideman"
    done = gadget_down(configfs)
    assert not g.exists()
    assert list((configfs / "usb_gadget").iterdir()) == []
    order = [line.replace(f"{g}/", "") for line in done]
    assert order[0] == "unbind UDC"                                  # unbind first
    index = {line: i for i, line in enumerate(order)}
    assert index["unlink configs/c.1/midi.usb0"] < index["rmdir configs/c.1/strings/0x409"] \
        < index["rmdir configs/c.1"] < index["rmdir functions/midi.usb0"] < index["rmdir strings/0x409"]
    assert done[-1] == f"rmdir {g}"
    assert gadget_down(configfs) == []   # twice: nothing left to do


def test_down_on_an_unbound_gadget_skips_the_unbind(sysfs):
    configfs, udc_class = sysfs
    gadget_up(configfs, udc_class=udc_class, serial="x")
    g = configfs / "usb_gadget" / "sideman"
    (g / "UDC").write_text("\n")
    done = gadget_down(configfs)
    assert not any("UDC" in line for line in done) and not g.exists()


def test_missing_udc_is_a_clear_error_and_builds_nothing(sysfs, tmp_path):
    configfs, udc_class = sysfs
    (udc_class / UDC).unlink()
    with pytest.raises(GadgetError, match="no USB device controller"):
        gadget_up(configfs, udc_class=udc_class)
    with pytest.raises(GadgetError, match="no USB device controller"):
        gadget_up(configfs, udc_class=tmp_path / "no" / "such" / "class")
    assert not (configfs / "usb_gadget" / "sideman").exists()


def test_missing_configfs_is_a_clear_error(tmp_path, sysfs):
    _, udc_class = sysfs
    with pytest.raises(GadgetError, match="libcomposite"):
        gadget_up(tmp_path / "not-configfs", udc_class=udc_class)


def test_command_line(sysfs, capsys, tmp_path):
    configfs, _ = sysfs
    assert main(["gadget", "up", "--configfs", str(configfs), "--udc", UDC]) == 0
    assert (configfs / "usb_gadget" / "sideman" / "UDC").read_text() == UDC
    assert main(["gadget", "up", "--configfs", str(configfs), "--udc", UDC]) == 0
    assert "already up" in capsys.readouterr().out
    assert main(["gadget", "down", "--configfs", str(configfs)]) == 0
    assert not (configfs / "usb_gadget" / "sideman").exists()
    assert main(["gadget", "up", "--configfs", str(tmp_path / "nothing"), "--udc", UDC]) == 1
    assert "sideman: gadget up:" in capsys.readouterr().err
