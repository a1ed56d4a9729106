#!/usr/bin/env python3
"""Build the box's image: dist/sideman_<version>_arm64.deb and dist/sideman_<version>_l4t-overlay.tar.gz.

    python image/build_image.py --out dist [--version X] [--wheelhouse]      (make image [WHEELHOUSE=1])

The .deb (Architecture arm64; its payload is pure Python, built on any host):
    /usr/share/sideman/wheels/            sideman-<v>-py3-none-any.whl (+ aarch64 cp310 dependency
                                          wheels with --wheelhouse)
    /usr/share/sideman/requirements-box.txt   what postinst pip-installs beside the wheel
    /usr/share/sideman/constraints-box.txt    (numpy<2 for JetPack's TensorRT bindings)
    /usr/lib/modules-load.d/sideman.conf  libcomposite, for the USB-MIDI gadget
    /usr/share/sideman/models/            the repo's models/ (files git tracks or would track)
    /etc/sideman/pinmap.toml              hardware/pinmap.toml (a conffile)
    /lib/systemd/system/                  systemd/*.service
    /lib/udev/rules.d/                    systemd/*.rules
    /usr/lib/sideman/sideman-engine-build the first-boot TensorRT engine build
    /usr/share/doc/sideman/               image/README.md, copyright
postinst (image/debian/postinst) makes /opt/sideman/venv and /usr/bin/sideman; see image/README.md.

The overlay tarball holds opt/sideman/<the .deb> and a first-boot unit that apt-installs it, to be
extracted into Linux_for_Tegra/rootfs/ before flashing.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - python < 3.11: sideman depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "image"
PACKAGE = "sideman"
ARCH = "arm64"
MAINTAINER = "Sideman maintainers <sideman@localhost>"
# The box: JetPack 6 = Ubuntu 22.04, python3 3.10, glibc 2.35, aarch64.
BOX_PYTHON = "3.10"
BOX_GLIBC_MINOR = 35
DEPENDS = [
    "python3 (>= 3.10)",
    "python3-venv",
    "python3-pip",
    # sideman[box] wants systemd-python; it reaches the venv through --system-site-packages instead
    # of being built by pip (which would need libsystemd-dev, pkg-config and gcc on the box).
    "python3-systemd",
    "libasound2",
    "libjack-jackd2-0 | libjack0",
    "libsystemd0",
]
# JetPack's TensorRT meta-package (trtexec, python3-libnvinfer): pulled in by apt's default
# install-recommends on a BSP-only rootfs; without it the engine build falls back to CPU/Markov.
RECOMMENDS = ["nvidia-tensorrt"]
# The built-in piano is off on the box (it drives a real synth); `--synth builtin` needs these.
SUGGESTS = ["libfluidsynth3", "timgm6mb-soundfont | musescore-general-soundfont"]
# Dependencies the box takes from Debian packages rather than pip (see DEPENDS).
FROM_APT = {"systemd-python"}
# pip constraints for the box's venv: JetPack's TensorRT (and NVIDIA's torch) Python bindings,
# visible through --system-site-packages, are built against numpy 1.x and fail to import under 2.x.
BOX_CONSTRAINTS = ["numpy<2"]
# A model file bigger than this is not shipped (models/README.md keeps each file <= 50 MB).
MAX_MODEL_BYTES = 200 * 1024 * 1024
# The box's wheel: the runtime package only. training/ (sideman-train) and bench/ (sideman-bench) are
# off-device tools; the wheel's pyproject.toml is the repo's, narrowed to firmware_py (box_pyproject).
SOURCE_PARTS = ("README.md", "LICENSE", "LICENSE.md", "LICENSE.txt", "MANIFEST.in", "firmware_py/")
RUNTIME_PACKAGE_DIR = "firmware_py"


def log(msg: str) -> None:
    print(f"build_image: {msg}", flush=True)


# ---------------------------------------------------------------- project metadata

def load_pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def debian_version(version: str) -> str:
    """PEP 440 -> Debian ordering: 1.0rc1 -> 1.0~rc1, 1.0.dev3 -> 1.0~dev3, 1.0+local stays."""
    v = re.sub(r"[.-]?(a|b|rc|alpha|beta|dev)(\d*)", r"~\1\2", version)
    if not re.match(r"^[0-9][A-Za-z0-9.+~-]*$", v):
        raise SystemExit(f"build_image: {version!r} is not a usable Debian version")
    return v


def requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else ""


def box_requirements(project: dict) -> list[str]:
    """sideman's dependencies plus the `box` extra, minus what apt provides."""
    reqs = list(project.get("dependencies", [])) + list(project.get("optional-dependencies", {}).get("box", []))
    out: list[str] = []
    for r in reqs:
        if requirement_name(r) in FROM_APT or r in out:
            continue
        out.append(r.split("#")[0].strip())
    return out


def check_requires_python(project: dict) -> str | None:
    """A warning when the wheel's Requires-Python shuts out the box's python3."""
    spec = project.get("requires-python", "")
    major, minor = (int(x) for x in BOX_PYTHON.split("."))
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = re.match(r"(>=|>|==|~=)\s*(\d+)\.(\d+)", clause)
        if not m:
            continue
        op, want = m.group(1), (int(m.group(2)), int(m.group(3)))
        if (op in (">=", "~=", "==") and (major, minor) < want) or (op == ">" and (major, minor) <= want):
            return (f"pyproject requires-python {spec!r} excludes the box's Python {BOX_PYTHON} "
                    "(JetPack 6): postinst's pip install of the wheel will refuse it")
    return None


# ---------------------------------------------------------------- source files

def repo_files(under: str | None = None) -> list[str]:
    """Files git tracks or would track (respects .gitignore; untracked new files count), else a walk."""
    if (REPO / ".git").exists() and shutil.which("git"):
        cmd = ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        if under:
            cmd += ["--", under]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout.decode()
        files = sorted({f for f in out.split("\0") if f and (REPO / f).is_file()})
        return files
    root = REPO / under if under else REPO
    skip = {".git", ".venv", "__pycache__", ".pytest_cache", "build", "dist"}
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip and not d.endswith(".egg-info")]
        for name in filenames:
            if not name.endswith((".pyc", ".pyo")):
                files.append(str(Path(dirpath, name).relative_to(REPO)))
    return sorted(files)


def is_lfs_pointer(path: Path) -> bool:
    if path.stat().st_size > 1024:
        return False
    return path.read_bytes().startswith(b"version https://git-lfs.github.com/spec/")


# ---------------------------------------------------------------- wheels

def box_pyproject(project_toml: dict) -> dict:
    """The repo's pyproject, for the box: only the runtime package and its `sideman` command."""
    box = {**project_toml, "project": dict(project_toml["project"])}
    box["project"]["scripts"] = {name: target for name, target in project_toml["project"].get("scripts", {}).items()
                                 if target.startswith(f"{PACKAGE}.")}
    tool = dict(box.get("tool", {}))
    tool["setuptools"] = {**tool.get("setuptools", {}), "packages": {"find": {"where": [RUNTIME_PACKAGE_DIR]}}}
    tool.pop("pytest", None)
    box["tool"] = tool
    return box


def build_wheel(dest: Path, work: Path) -> Path:
    """pip wheel from a clean copy of the runtime sources (the checkout's build/ and egg-info stay untouched)."""
    import tomli_w

    src = work / "src"
    dirs = tuple(p for p in SOURCE_PARTS if p.endswith("/"))
    for rel in repo_files():
        if rel in SOURCE_PARTS or rel.startswith(dirs):
            target = src / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target)
    (src / "pyproject.toml").write_text(tomli_w.dumps(box_pyproject(load_pyproject())), encoding="utf-8")
    dest.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(dest)]
    # Offline and fast with the dev venv's setuptools; an older setuptools than pyproject needs
    # (e.g. PEP 639 license strings) fails that way, so retry in pip's isolated build env.
    proc = subprocess.run(base + ["--no-build-isolation", str(src)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        log("pip wheel --no-build-isolation failed; retrying with build isolation")
        proc = subprocess.run(base + [str(src)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout.decode(errors="replace"))
            raise SystemExit("build_image: could not build the sideman wheel")
    wheels = sorted(dest.glob(f"{PACKAGE}-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"build_image: expected one sideman wheel, found {wheels}")
    return wheels[0]


def constraints_text() -> str:
    return ("# pip constraints for /opt/sideman/venv (generated by image/build_image.py).\n"
            "# numpy<2: JetPack's TensorRT/torch bindings, seen via --system-site-packages, need numpy 1.x.\n"
            + "".join(c + "\n" for c in BOX_CONSTRAINTS))


def download_wheelhouse(reqs: list[str], constraints: Path, dest: Path) -> None:
    """aarch64 / CPython 3.10 wheels of the box's dependencies, so postinst needs no network."""
    platforms = ["manylinux2014_aarch64"] + [f"manylinux_2_{m}_aarch64" for m in range(17, BOX_GLIBC_MINOR + 1)]
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-d", str(dest),
           "--python-version", BOX_PYTHON, "--implementation", "cp", "--only-binary=:all:",
           "-c", str(constraints)]
    for p in platforms:
        cmd += ["--platform", p]
    log("downloading the aarch64 cp310 wheelhouse: " + " ".join(reqs))
    subprocess.run(cmd + reqs, check=True)


# ---------------------------------------------------------------- staging

def put(root: Path, rel: str, data: bytes | Path, mode: int = 0o644) -> Path:
    target = root / rel.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, Path):
        shutil.copyfile(data, target)
    else:
        target.write_bytes(data)
    os.chmod(target, mode)
    return target


def fill(template: Path, **values: str) -> bytes:
    text = template.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text.encode()


def stage(root: Path, version: str, wheel_dir: Path, reqs: list[str], units: list[Path],
          rules: list[Path]) -> list[str]:
    """Lay out the package tree under root; returns the conffiles."""
    for whl in sorted(wheel_dir.glob("*.whl")):
        put(root, f"usr/share/sideman/wheels/{whl.name}", whl)
    put(root, "usr/share/sideman/requirements-box.txt", (
        "# sideman[box] as postinst installs it into /opt/sideman/venv (generated by image/build_image.py).\n"
        "# systemd-python is left out: python3-systemd (a Depends) is seen via --system-site-packages.\n"
        + "".join(r + "\n" for r in reqs)).encode())
    put(root, "usr/share/sideman/constraints-box.txt", constraints_text().encode())
    # The USB-MIDI gadget's configfs tree needs libcomposite loaded before its unit's Condition.
    put(root, "usr/lib/modules-load.d/sideman.conf",
        b"# Sideman USB-MIDI gadget (sideman-usb-gadget.service): configfs gadget support.\nlibcomposite\n")

    shipped = 0
    for rel in repo_files("models"):
        path = REPO / rel
        if path.stat().st_size > MAX_MODEL_BYTES:
            log(f"not shipping {rel}: {path.stat().st_size >> 20} MB is over {MAX_MODEL_BYTES >> 20} MB")
            continue
        if is_lfs_pointer(path):
            raise SystemExit(f"build_image: {rel} is a Git LFS pointer; run `git lfs pull` first")
        put(root, "usr/share/sideman/" + rel, path)
        shipped += 1
    log(f"{shipped} model file(s) -> /usr/share/sideman/models")

    put(root, "etc/sideman/pinmap.toml", REPO / "hardware" / "pinmap.toml")
    for unit in units:
        put(root, f"lib/systemd/system/{unit.name}", unit)
    for rule in rules:
        put(root, f"lib/udev/rules.d/{rule.name}", rule)
    put(root, "usr/lib/sideman/sideman-engine-build", IMAGE / "sideman-engine-build", 0o755)
    put(root, "usr/share/doc/sideman/README.md", IMAGE / "README.md")
    put(root, "usr/share/doc/sideman/copyright", (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: sideman\n\n"
        "Files: *\nLicense: MIT\n\n"
        "Files: usr/share/sideman/models/*\n"
        "License: see the model cards beside each model (markov/: CC BY-NC 3.0, PiJAMA-derived)\n").encode())
    for d in (p for p in root.rglob("*") if p.is_dir()):
        os.chmod(d, 0o755)
    return ["/etc/sideman/pinmap.toml"]


def write_control(root: Path, version: str, conffiles: list[str], unit_names: list[str]) -> None:
    debian = root / "DEBIAN"
    debian.mkdir(mode=0o755)
    installed_kib = sum((p.stat().st_size + 1023) // 1024 for p in root.rglob("*") if p.is_file()) \
        + sum(1 for p in root.rglob("*") if p.is_dir())
    control = (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {ARCH}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: {', '.join(DEPENDS)}\n"
        f"Recommends: {', '.join(RECOMMENDS)}\n"
        f"Suggests: {', '.join(SUGGESTS)}\n"
        "Section: sound\n"
        "Priority: optional\n"
        "Description: Sideman jazz-piano stage box (Jetson Orin)\n"
        " A stage box that plays jazz piano with a human pianist: it passes MIDI through,\n"
        " listens, and answers as a second pianist. Runs as the sideman systemd service.\n"
        " .\n"
        " Installs the sideman wheel into /opt/sideman/venv (with JetPack's system\n"
        " site-packages visible), the shipped models, the pin map, systemd units, udev\n"
        " rules, and a first-boot TensorRT engine build that falls back to the CPU/Markov\n"
        " voice when TensorRT or the transformer model is not there.\n"
    )
    put(root, "DEBIAN/control", control.encode())
    put(root, "DEBIAN/conffiles", "".join(c + "\n" for c in conffiles).encode())
    values = {"UNITS": " ".join(unit_names), "VERSION": version}
    for script in ("postinst", "prerm", "postrm"):
        put(root, f"DEBIAN/{script}", fill(IMAGE / "debian" / script, **values), 0o755)
    sums = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith("DEBIAN/") and "/" + rel not in conffiles:
            sums.append(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {rel}\n")
    put(root, "DEBIAN/md5sums", "".join(sums).encode())


def build_deb(root: Path, out: Path, version: str) -> Path:
    deb = out / f"{PACKAGE}_{version}_{ARCH}.deb"
    cmd = ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)]
    if shutil.which("dpkg-deb") is None:
        raise SystemExit("build_image: dpkg-deb not found (apt-get install dpkg)")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return deb


# ---------------------------------------------------------------- overlay

def build_overlay(deb: Path, out: Path, version: str) -> Path:
    tgz = out / f"{PACKAGE}_{version}_l4t-overlay.tar.gz"
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    unit = "sideman-firstboot-install.service"

    def info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.mtime, ti.linkname = kind, mode, size, mtime, link
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    with open(tgz, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=mtime) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in ("opt", "opt/sideman", "etc", "etc/systemd", "etc/systemd/system",
                  "etc/systemd/system/multi-user.target.wants"):
            tar.addfile(info(d, tarfile.DIRTYPE, 0o755))
        files = [(f"opt/sideman/{deb.name}", deb.read_bytes(), 0o644),
                 ("opt/sideman/sideman-firstboot-install",
                  (IMAGE / "overlay" / "sideman-firstboot-install").read_bytes(), 0o755),
                 (f"etc/systemd/system/{unit}", (IMAGE / "overlay" / unit).read_bytes(), 0o644)]
        for name, data, mode in files:
            tar.addfile(info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
        # What `systemctl enable` would write inside the rootfs.
        tar.addfile(info(f"etc/systemd/system/multi-user.target.wants/{unit}", tarfile.SYMTYPE, 0o777,
                         link=f"/etc/systemd/system/{unit}"))
    return tgz


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default dist/)")
    ap.add_argument("--version", help="package version (default: pyproject's [project] version)")
    ap.add_argument("--wheelhouse", action="store_true",
                    help="also ship aarch64 cp310 wheels of the dependencies (pip download; needs network)")
    args = ap.parse_args(argv)

    project = load_pyproject().get("project", {})
    version = debian_version(args.version or str(project.get("version", "0")))
    warning = check_requires_python(project)
    if warning:
        log("WARNING: " + warning)
    reqs = box_requirements(project)
    units = sorted((REPO / "systemd").glob("*.service"))
    rules = sorted((REPO / "systemd").glob("*.rules"))
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="sideman-image-") as tmp:
        work = Path(tmp)
        wheel_dir = work / "wheels"
        wheel = build_wheel(wheel_dir, work)
        log(f"wheel {wheel.name}")
        if args.wheelhouse:
            constraints = work / "constraints.txt"
            constraints.write_text(constraints_text())
            download_wheelhouse(reqs, constraints, wheel_dir)
        root = work / "root"
        root.mkdir(mode=0o755)
        conffiles = stage(root, version, wheel_dir, reqs, units, rules)
        write_control(root, version, conffiles, [u.name for u in units])
        deb = build_deb(root, out, version)
    log(f"{deb} ({deb.stat().st_size / 1e6:.1f} MB; units: {', '.join(u.name for u in units) or 'none'}; "
        f"udev rules: {', '.join(r.name for r in rules) or 'none'})")
    tgz = build_overlay(deb, out, version)
    log(f"{tgz} ({tgz.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
