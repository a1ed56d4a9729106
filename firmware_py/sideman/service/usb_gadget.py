"""The box as a USB-MIDI device: a libcomposite gadget with one f_midi function, set up through
configfs (`sideman gadget up|down`, run as root by sideman-usb-gadget.service).

Layout under <configfs>/usb_gadget/sideman/:
    idVendor idProduct bcdDevice bcdUSB
    strings/0x409/{manufacturer,product,serialnumber}
    functions/midi.usb0/{id,in_ports,out_ports,buflen,qlen}
    configs/c.1/{MaxPower,bmAttributes}  configs/c.1/strings/0x409/configuration
    configs/c.1/midi.usb0 -> functions/midi.usb0
    UDC   (the device controller to bind to; first entry of /sys/class/udc unless named)

On the box the function shows up as an ALSA card (rawmidi + sequencer port) that the firmware's
hot-plug finds like any other MIDI device, so a computer on the USB cable plays into the box and
hears thru + the AI.

Both directions are idempotent. On real configfs the kernel creates the attribute files and default
groups on mkdir and removes them on rmdir; on a plain directory tree (the tests, a dry run) `down`
removes those files itself.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("sideman.gadget")

CONFIGFS = Path("/sys/kernel/config")
UDC_CLASS = Path("/sys/class/udc")

# pid.codes' open-hardware VID. 0x0001 is pid.codes' shared *Test PID* ("for in-house testing
# only"): fine on the bench, but a box that ships needs its own PID from https://pid.codes first.
ID_VENDOR = 0x1209
ID_PRODUCT = 0x0001
BCD_DEVICE = 0x0100  # device release 1.00
BCD_USB = 0x0200     # USB 2.0
LANG = "0x409"       # US English strings
FUNCTION = "midi.usb0"
CONFIG = "c.1"
MIDI = {
    # The gadget's ALSA card id on the box (<= 15 chars); not starting with "sideman", which the
    # firmware's port matching treats as its own ports.
    "id": "HostUSB",
    "in_ports": "1",
    "out_ports": "1",
    "buflen": "512",  # bytes per USB request
    "qlen": "32",     # requests queued per direction
}
# The box has its own supply: self-powered (0xC0), asks the host for 2 mA.
CONFIG_ATTRS = {"bmAttributes": "0xc0", "MaxPower": "2"}


class GadgetError(RuntimeError):
    pass


def gadget_dir(configfs_root: Path = CONFIGFS, name: str = "sideman") -> Path:
    return Path(configfs_root) / "usb_gadget" / name


def find_udc(udc_class: Path = UDC_CLASS) -> str:
    """The first USB device controller (e.g. '3550000.usb' on a Jetson Orin)."""
    try:
        names = sorted(p.name for p in Path(udc_class).iterdir())
    except FileNotFoundError:
        names = []
    if not names:
        raise GadgetError(f"no USB device controller in {udc_class}: this board cannot be a USB device "
                          "(or its port is in host mode / the UDC driver is not loaded)")
    return names[0]


def _serial_number() -> str:
    for source in (Path("/proc/device-tree/serial-number"), Path("/etc/machine-id")):
        try:
            text = source.read_bytes().replace(b"\0", b"").decode("ascii", "replace").strip()
        except OSError:
            continue
        if text:
            return text[:32]
    return "0"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _write(path: Path, value: str, done: list[str]) -> None:
    """Write an attribute unless it already holds that value (no newline: f_midi's `id` would keep it)."""
    if path.exists() and _read(path) == value:
        return
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise GadgetError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from exc
    done.append(f"{path} = {value}")


def _unbind(gadget: Path, done: list[str]) -> None:
    """Detach from the controller (the host sees the device go away). configfs takes an empty
    line; a zero-byte write might not reach the kernel at all."""
    try:
        with open(gadget / "UDC", "w") as fh:
            fh.write("\n")
    except OSError as exc:
        raise GadgetError(f"cannot unbind {gadget / 'UDC'}: {exc.strerror or exc}") from exc
    done.append(f"unbind {gadget / 'UDC'}")


def _mkdir(path: Path, done: list[str]) -> None:
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise GadgetError(f"cannot create {path}: {exc.strerror or exc}"
                          + (" (is libcomposite loaded? modprobe libcomposite)" if exc.errno == errno.ENOENT else "")) from exc
    done.append(f"mkdir {path}")


def gadget_up(configfs_root: Path = CONFIGFS, udc: str | None = None, name: str = "sideman", *,
              udc_class: Path = UDC_CLASS, serial: str | None = None) -> list[str]:
    """Create (or complete) the gadget and bind it to `udc`. Returns what it changed (empty when
    it was already up on that UDC)."""
    configfs_root = Path(configfs_root)
    base = Path(configfs_root) / "usb_gadget"
    if not base.is_dir():
        raise GadgetError(f"{base} does not exist: configfs is not mounted at {configfs_root} "
                          "or libcomposite is not loaded (modprobe libcomposite)")
    udc = udc or find_udc(udc_class)
    gadget = gadget_dir(configfs_root, name)
    done: list[str] = []
    bound = _read(gadget / "UDC")
    if bound == udc:
        log.info("USB gadget %s already up on %s", name, udc)
        return done
    if bound:
        # Attributes cannot change while bound (EBUSY): unbind from the other controller first.
        _unbind(gadget, done)
    _mkdir(gadget, done)
    _write(gadget / "idVendor", f"0x{ID_VENDOR:04x}", done)
    _write(gadget / "idProduct", f"0x{ID_PRODUCT:04x}", done)
    _write(gadget / "bcdDevice", f"0x{BCD_DEVICE:04x}", done)
    _write(gadget / "bcdUSB", f"0x{BCD_USB:04x}", done)
    strings = gadget / "strings" / LANG
    _mkdir(strings, done)
    _write(strings / "manufacturer", "Sideman", done)
    _write(strings / "product", "Sideman jazz piano box", done)
    _write(strings / "serialnumber", serial or _serial_number(), done)
    function = gadget / "functions" / FUNCTION
    _mkdir(function, done)
    for attr, value in MIDI.items():
        _write(function / attr, value, done)
    config = gadget / "configs" / CONFIG
    _mkdir(config / "strings" / LANG, done)
    _write(config / "strings" / LANG / "configuration", "MIDI", done)
    for attr, value in CONFIG_ATTRS.items():
        _write(config / attr, value, done)
    link = config / FUNCTION
    if link.is_symlink():
        if Path(os.path.realpath(link)) != Path(os.path.realpath(function)):
            raise GadgetError(f"{link} points elsewhere ({os.readlink(link)}); run `sideman gadget down` first")
    else:
        try:
            os.symlink(function, link)
        except OSError as exc:
            raise GadgetError(f"cannot link {link} -> {function}: {exc.strerror or exc}") from exc
        done.append(f"link {link} -> {function}")
    try:
        _write(gadget / "UDC", udc, done)
    except GadgetError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EBUSY:
            raise GadgetError(f"USB controller {udc} is busy: another gadget holds it "
                              "(on Jetson: systemctl disable --now nv-l4t-usb-device-mode)") from cause
        if isinstance(cause, OSError) and cause.errno in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
            raise GadgetError(f"no USB device controller named {udc!r} (see {udc_class})") from cause
        raise
    for line in done:
        log.info("gadget: %s", line)
    return done


def _remove_dir(path: Path, done: list[str]) -> None:
    if not path.is_dir() or path.is_symlink():
        return
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise GadgetError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        # Only a plain directory tree gets here (configfs drops attributes and default groups on
        # rmdir): remove its attribute files and empty default-group directories, then retry.
        for child in path.iterdir():
            try:
                if child.is_symlink() or child.is_file():
                    child.unlink()
                elif child.is_dir():
                    child.rmdir()
            except OSError:
                pass  # reported below with what is left
        try:
            path.rmdir()
        except OSError as exc2:
            left = ", ".join(sorted(p.name for p in path.iterdir()))
            raise GadgetError(f"cannot remove {path}: still holds {left}") from exc2
    done.append(f"rmdir {path}")


def gadget_down(configfs_root: Path = CONFIGFS, udc: str | None = None, name: str = "sideman") -> list[str]:
    """Unbind and remove the gadget (in the order configfs requires). Returns what it changed
    (empty when there was no gadget). `udc` is accepted for symmetry and ignored."""
    gadget = gadget_dir(configfs_root, name)
    done: list[str] = []
    if not gadget.is_dir():
        log.info("USB gadget %s is not there: nothing to do", name)
        return done
    if _read(gadget / "UDC"):
        _unbind(gadget, done)
    configs = gadget / "configs"
    for config in sorted(configs.iterdir()) if configs.is_dir() else []:
        if not config.is_dir():
            continue
        for entry in sorted(config.iterdir()):
            if entry.is_symlink():        # functions linked into the configuration
                entry.unlink()
                done.append(f"unlink {entry}")
        for strings in sorted((config / "strings").iterdir()) if (config / "strings").is_dir() else []:
            _remove_dir(strings, done)
        _remove_dir(config, done)
    functions = gadget / "functions"
    for function in sorted(functions.iterdir()) if functions.is_dir() else []:
        _remove_dir(function, done)
    strings_root = gadget / "strings"
    for strings in sorted(strings_root.iterdir()) if strings_root.is_dir() else []:
        _remove_dir(strings, done)
    _remove_dir(gadget, done)
    for line in done:
        log.info("gadget: %s", line)
    return done


# --- command line: `sideman gadget up|down [--configfs DIR] [--udc NAME]` ------------------------
def add_gadget_parser(subparsers) -> argparse.ArgumentParser:
    gadget = subparsers.add_parser("gadget", help="the box as a USB-MIDI device (configfs; run as root)")
    gadget.add_argument("action", choices=["up", "down"])
    gadget.add_argument("--configfs", type=Path, default=CONFIGFS, metavar="DIR",
                        help=f"where configfs is mounted (default {CONFIGFS})")
    gadget.add_argument("--udc", default=None, metavar="NAME",
                        help=f"USB device controller to bind (default: the first in {UDC_CLASS})")
    gadget.add_argument("--name", default="sideman", help=argparse.SUPPRESS)
    return gadget


def cmd_gadget(args) -> int:
    try:
        if args.action == "up":
            done = gadget_up(args.configfs, args.udc, args.name)
            print(f"USB-MIDI gadget up ({len(done)} changes)" if done else "USB-MIDI gadget already up")
        else:
            done = gadget_down(args.configfs, args.udc, args.name)
            print(f"USB-MIDI gadget down ({len(done)} changes)" if done else "USB-MIDI gadget already down")
    except GadgetError as exc:
        print(f"sideman: gadget {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sideman")
    add_gadget_parser(parser.add_subparsers(dest="command", required=True))
    return cmd_gadget(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
