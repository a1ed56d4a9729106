"""`make image`: the .deb, its maintainer scripts, the L4T overlay and the first-boot engine build.

The .deb is built once per module (image/build_image.py, a few seconds) and inspected with
dpkg-deb. The maintainer scripts run for real under dash against a temp root (SIDEMAN_ROOT) with
every command that would touch this machine's accounts or services replaced by a logging shim.
The engine build runs for real in a temp dir with a fake trtexec (see fake_trtexec).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / "image" / "build_image.py"
ENGINE_BUILD = ROOT / "image" / "sideman-engine-build"

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def project_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def shipped_model_files() -> list[str]:
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "models"]).stdout
        return sorted(f for f in out.splitlines() if (ROOT / f).is_file())
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "models").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = run([sys.executable, str(BUILDER), "--out", str(out)], cwd=ROOT)
    version = project_version()
    deb = out / f"sideman_{version}_arm64.deb"
    overlay = out / f"sideman_{version}_l4t-overlay.tar.gz"
    assert deb.is_file(), proc.stdout + proc.stderr
    assert overlay.is_file(), proc.stdout + proc.stderr
    control = tmp_path_factory.mktemp("control") / "DEBIAN"
    run(["dpkg-deb", "-e", str(deb), str(control)])
    return {"deb": deb, "overlay": overlay, "version": version, "control": control, "log": proc.stdout}


def deb_listing(deb: Path) -> dict[str, str]:
    """path -> `ls -l`-style mode string, from dpkg-deb -c."""
    entries = {}
    for line in run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines():
        parts = line.split()
        name = parts[5]
        entries[name[2:] if name.startswith("./") else name] = parts[0] + " " + parts[1]
    return entries


# ------------------------------------------------------------------------------------ the .deb

def test_deb_name_and_control_fields(image):
    deb, version = image["deb"], image["version"]
    assert deb.name == f"sideman_{version}_arm64.deb"
    fields = {f: run(["dpkg-deb", "-f", str(deb), f]).stdout.strip()
              for f in ("Package", "Version", "Architecture", "Maintainer", "Depends", "Description")}
    assert fields["Package"] == "sideman"
    assert fields["Version"] == version
    assert fields["Architecture"] == "arm64"
    assert fields["Maintainer"]
    depends = fields["Depends"]
    for dep in ("python3 (>= 3.10)", "python3-venv", "python3-pip", "python3-systemd", "libasound2",
                "libjack-jackd2-0 | libjack0", "libsystemd0"):
        assert dep in depends, depends
    assert fields["Description"].startswith("Sideman")
    info = run(["dpkg-deb", "-I", str(deb)]).stdout
    assert "Installed-Size:" in info


def test_deb_contents(image):
    entries = deb_listing(image["deb"])
    version = image["version"]
    wheel = f"usr/share/sideman/wheels/sideman-{version}-py3-none-any.whl"
    assert wheel in entries
    for req in ("usr/share/sideman/requirements-box.txt", "usr/share/sideman/constraints-box.txt"):
        assert req in entries
    models = shipped_model_files()
    assert models, "the repo ships models"
    for rel in models:
        assert f"usr/share/sideman/{rel}" in entries, rel
    units = sorted(p.name for p in (ROOT / "systemd").glob("*.service"))
    assert "sideman-engine-build.service" in units
    for unit in units:
        assert f"lib/systemd/system/{unit}" in entries, unit
    for rules in sorted(p.name for p in (ROOT / "systemd").glob("*.rules")):
        assert f"lib/udev/rules.d/{rules}" in entries, rules
    assert "etc/sideman/pinmap.toml" in entries
    assert "usr/lib/modules-load.d/sideman.conf" in entries
    mode = entries["usr/lib/sideman/sideman-engine-build"]
    assert mode.startswith("-rwxr-xr-x root/root"), mode
    # Everything root-owned, nothing writable by others, no stray build artefacts.
    for name, mode in entries.items():
        assert mode.endswith("root/root"), (name, mode)
        assert mode[8] != "w" or mode[0] == "l", (name, mode)
        assert "__pycache__" not in name and not name.endswith(".pyc"), name


def test_the_wheel_holds_the_runtime_package_only(image, tmp_path):
    """The box gets `sideman` and nothing offline: no training, benchmark, evaluation or fuzz code."""
    import zipfile

    run(["dpkg-deb", "-x", str(image["deb"]), str(tmp_path)])
    wheel = tmp_path / f"usr/share/sideman/wheels/sideman-{image['version']}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    modules = [n for n in names if n.endswith(".py")]
    assert "sideman/box.py" in modules and "sideman/play/session.py" in modules
    assert all(n.startswith("sideman/") for n in modules), [n for n in modules if not n.startswith("sideman/")]
    offline = [n for n in modules if any(word in n for word in ("bench", "eval", "fuzz", "baseline", "train"))]
    assert offline == []
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "sideman = sideman.cli:main" in scripts and "sideman-train" not in scripts and "sideman-bench" not in scripts


def test_requirements_leave_systemd_python_to_apt(image, tmp_path):
    run(["dpkg-deb", "-x", str(image["deb"]), str(tmp_path)])
    reqs = (tmp_path / "usr/share/sideman/requirements-box.txt").read_text()
    names = [line.split(">")[0].split("<")[0].split("=")[0].strip().lower()
             for line in reqs.splitlines() if line and not line.startswith("#")]
    assert "systemd-python" not in names
    assert "jetson.gpio" in names and "python-rtmidi" in names and "numpy" in names
    assert "numpy<2" in (tmp_path / "usr/share/sideman/constraints-box.txt").read_text()
    assert (tmp_path / "etc/sideman/pinmap.toml").read_bytes() == (ROOT / "hardware/pinmap.toml").read_bytes()


def test_conffiles_md5sums_and_maintainer_scripts(image, tmp_path):
    control = image["control"]
    assert (control / "conffiles").read_text().split() == ["/etc/sideman/pinmap.toml"]
    # md5sums: every non-conffile payload file, with the right sums.
    data = tmp_path / "data"
    run(["dpkg-deb", "-x", str(image["deb"]), str(data)])
    sums = dict(reversed(line.split("  ", 1)) for line in (control / "md5sums").read_text().splitlines())
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())
    assert sorted(sums) == [f for f in files if f != "etc/sideman/pinmap.toml"]
    for rel, digest in sums.items():
        assert hashlib.md5((data / rel).read_bytes()).hexdigest() == digest, rel
    for script in ("postinst", "prerm", "postrm"):
        path = control / script
        assert path.stat().st_mode & 0o111 == 0o111, script
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text, script
        assert "@UNITS@" not in text and "@VERSION@" not in text, script
        assert "sideman.service" in text and "sideman-engine-build.service" in text, script
        subprocess.run(["sh", "-n", str(path)], check=True)
    postinst = (control / "postinst").read_text()
    assert "adduser --system --group" in postinst and "useradd --system" in postinst
    assert "deb-systemd-helper enable" in postinst and "systemctl enable" in postinst
    assert "--system-site-packages" in postinst


def test_engine_build_unit():
    unit = (ROOT / "systemd" / "sideman-engine-build.service").read_text()
    # The box must not wait silent for trtexec on a first boot: no ordering before sideman.service.
    assert "Before=sideman.service" not in unit.splitlines()
    for line in ("Type=oneshot", "ExecStart=/usr/lib/sideman/sideman-engine-build",
                 "ConditionPathExists=!/var/lib/sideman/engines/.built", "User=sideman",
                 "StateDirectory=sideman sideman/engines"):
        assert line in unit.splitlines(), line
    install = unit.split("[Install]", 1)[1]
    assert "multi-user.target" in install and "sideman.service" in install


# ------------------------------------------------------------------------------------ overlay

def test_overlay_tarball(image, tmp_path):
    version = image["version"]
    unit = "sideman-firstboot-install.service"
    with tarfile.open(image["overlay"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
        deb = members[f"opt/sideman/sideman_{version}_arm64.deb"]
        assert deb.isfile() and tar.extractfile(deb).read() == image["deb"].read_bytes()
        unit_member = members[f"etc/systemd/system/{unit}"]
        assert unit_member.isfile() and unit_member.mode == 0o644
        wants = members[f"etc/systemd/system/multi-user.target.wants/{unit}"]
        assert wants.issym() and wants.linkname == f"/etc/systemd/system/{unit}"
        script = members["opt/sideman/sideman-firstboot-install"]
        assert script.isfile() and script.mode == 0o755
        for m in members.values():
            assert m.uid == 0 and m.gid == 0, m.name
            assert not m.name.startswith("/") and ".." not in m.name.split("/"), m.name
        unit_text = tar.extractfile(unit_member).read().decode()
        script_path = tmp_path / "firstboot"
        script_path.write_bytes(tar.extractfile(script).read())
    assert "ExecStart=/opt/sideman/sideman-firstboot-install" in unit_text
    assert "WantedBy=multi-user.target" in unit_text
    text = script_path.read_text()
    assert "apt-get install" in text and "/opt/sideman/sideman_*_arm64.deb" in text
    assert 'systemctl disable "$UNIT"' in text and "dpkg -i" in text
    subprocess.run(["sh", "-n", str(script_path)], check=True)


# ------------------------------------------------------------------------------------ maintainer scripts, run

# Commands that would change this machine (accounts, services, udev) become loggers. getent answers
# from a tiny file database under $SHIM_DB; adduser/addgroup add to it.
SHIM = """#!/bin/sh
echo "$(basename "$0") $*" >> "$SHIM_LOG"
case "$(basename "$0")" in
    getent) [ -e "$SHIM_DB/$1-$2" ] ;;
    adduser) for last; do :; done; touch "$SHIM_DB/passwd-$last" "$SHIM_DB/group-$last" ;;
    addgroup) for last; do :; done; touch "$SHIM_DB/group-$last" ;;
    deluser) for last; do :; done; rm -f "$SHIM_DB/passwd-$last" ;;
    *) exit 0 ;;
esac
"""
SHIMMED = ("getent", "adduser", "addgroup", "useradd", "groupadd", "usermod", "deluser", "delgroup",
           "userdel", "groupdel", "chown", "systemctl", "deb-systemd-helper", "deb-systemd-invoke", "udevadm")

# Stands in for python3: `-m venv DIR` makes a venv whose python logs pip calls and, for the wheel,
# installs a `sideman` entry point.
FAKE_PYTHON = """#!/bin/sh
echo "python3 $*" >> "$SHIM_LOG"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    for dir; do :; done
    mkdir -p "$dir/bin"
    cat > "$dir/bin/python" <<'EOF'
#!/bin/sh
echo "venv-python $*" >> "$SHIM_LOG"
case "$*" in *--force-reinstall*) printf '#!/bin/sh\\n' > "$(dirname "$0")/sideman" ;; esac
exit 0
EOF
    chmod +x "$dir/bin/python"
fi
"""


def maint_env(tmp_path: Path) -> dict:
    shims, db = tmp_path / "shims", tmp_path / "db"
    shims.mkdir()
    db.mkdir()
    for name in SHIMMED:
        (shims / name).write_text(SHIM)
        (shims / name).chmod(0o755)
    (shims / "python3").write_text(FAKE_PYTHON)
    (shims / "python3").chmod(0o755)
    for group in ("audio", "dialout", "video"):  # gpio, i2c, render: absent on this pretend box
        (db / f"group-{group}").touch()
    env = dict(os.environ)
    env.update(PATH=f"{shims}:{env['PATH']}", SHIM_LOG=str(tmp_path / "log"), SHIM_DB=str(db),
               SIDEMAN_ROOT=str(tmp_path / "root"), SIDEMAN_PYTHON=str(shims / "python3"))
    return env


def maint(image, script: str, *args: str, env: dict) -> str:
    log = Path(env["SHIM_LOG"])
    log.write_text("")
    run(["sh", str(image["control"] / script), *args], env=env)
    return log.read_text()


def test_maintainer_scripts_install_upgrade_remove_purge(image, tmp_path):
    env = maint_env(tmp_path)
    root = Path(env["SIDEMAN_ROOT"])
    run(["dpkg-deb", "-x", str(image["deb"]), str(root)])
    (root / "var/lib/sideman/engines").mkdir(parents=True)
    (root / "var/lib/sideman/engines/.built").write_text("old\n")
    units = sorted(p.name for p in (ROOT / "systemd").glob("*.service"))
    version = image["version"]

    # Fresh install, no systemd running (a chroot building the rootfs): nothing gets started.
    log = maint(image, "postinst", "configure", "", env=env)
    assert "adduser --system --group --no-create-home --home /var/lib/sideman" in log
    assert "addgroup --system gpio" in log and "addgroup --system i2c" in log
    for group in ("audio", "gpio", "i2c", "dialout", "video"):
        assert f"usermod -a -G {group} sideman" in log, group
    assert "usermod -a -G render" not in log
    assert "chown sideman:sideman" in log
    assert not (root / "var/lib/sideman/engines/.built").exists()  # new version: engines rebuilt
    assert f"-m venv --system-site-packages {root}/opt/sideman/venv" in log
    reqs = f"{root}/usr/share/sideman/requirements-box.txt"
    assert f"install -r {reqs} -c {root}/usr/share/sideman/constraints-box.txt" in log  # no wheelhouse: PyPI
    assert "--no-index --find-links" not in log
    assert (f"install --no-index --no-deps --force-reinstall "
            f"{root}/usr/share/sideman/wheels/sideman-{version}-py3-none-any.whl") in log
    link = root / "usr/bin/sideman"
    assert link.is_symlink() and os.readlink(link) == "/opt/sideman/venv/bin/sideman"
    for unit in units:
        assert f"deb-systemd-helper enable {unit}" in log, unit
    assert "restart" not in log and "udevadm" not in log

    # Rerun (dpkg --configure -a, upgrade) with systemd up: user kept, venv reused, units restarted.
    (root / "run/systemd/system").mkdir(parents=True)
    (root / "run/udev").mkdir(parents=True)
    log = maint(image, "postinst", "configure", version, env=env)
    assert "adduser" not in log and "addgroup" not in log
    assert "-m venv" not in log
    assert "systemctl --system daemon-reload" in log
    assert "udevadm control --reload-rules" in log
    assert "systemctl --no-block restart sideman-engine-build.service sideman.service" in log

    # Wheelhouse shipped (make image WHEELHOUSE=1): offline install from it.
    (root / "usr/share/sideman/wheels/numpy-1.26.4-cp310-cp310-manylinux2014_aarch64.whl").write_bytes(b"")
    log = maint(image, "postinst", "configure", version, env=env)
    assert f"install --no-index --find-links {root}/usr/share/sideman/wheels -r {reqs}" in log

    log = maint(image, "prerm", "upgrade", version, env=env)
    assert "stop" not in log
    log = maint(image, "prerm", "remove", env=env)
    for unit in units:
        assert f"deb-systemd-invoke stop {unit}" in log, unit

    log = maint(image, "postrm", "remove", env=env)
    assert not link.exists() and not link.is_symlink()
    assert not (root / "opt/sideman/venv").exists()
    assert (root / "var/lib/sideman").is_dir()  # sessions survive a remove
    assert "deluser" not in log

    log = maint(image, "postrm", "purge", env=env)
    assert not (root / "var/lib/sideman").exists()
    assert "deluser --system sideman" in log
    for unit in units:
        assert f"deb-systemd-helper purge {unit}" in log, unit
    maint(image, "postrm", "purge", env=env)  # idempotent


# ------------------------------------------------------------------------------------ engine build

# TensorRT cannot exist on this machine (no Jetson, no GPU): this sh script stands in for
# /usr/src/tensorrt/bin/trtexec. It logs its arguments and, like the real one, prints the TensorRT
# version banner and writes the engine to --saveEngine; it fails instead when its arguments contain
# $FAKE_TRTEXEC_FAIL.
FAKE_TRTEXEC = """#!/bin/sh
echo "$*" >> "$FAKE_TRTEXEC_LOG"
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v8602] # trtexec $*"
case "$*" in
    *"${FAKE_TRTEXEC_FAIL:-no failure asked}"*)
        echo "[E] [TRT] ModelImporter.cpp:771: ERROR: unsupported ONNX op"
        echo "&&&& FAILED TensorRT.trtexec [TensorRT v8602]"
        exit 1 ;;
esac
for arg; do
    case "$arg" in --saveEngine=*) printf 'fake-plan:%s\\n' "$*" > "${arg#--saveEngine=}" ;; esac
done
echo "&&&& PASSED TensorRT.trtexec [TensorRT v8602]"
"""


@pytest.fixture
def engine_env(tmp_path):
    models, state = tmp_path / "models", tmp_path / "state"
    transformer = models / "transformer"
    transformer.mkdir(parents=True)
    graphs = []
    for name in ("encoder", "decoder"):
        data = f"not really onnx: {name}\n".encode()
        (transformer / f"{name}.onnx").write_bytes(data)
        graphs.append({"name": name, "onnx": f"{name}.onnx", "sha256": hashlib.sha256(data).hexdigest(),
                       "trtexec_args": ["--minShapes=tokens:1x1", "--maxShapes=tokens:1x256"]})
    (transformer / "manifest.json").write_text(json.dumps({"schema": 1, "graphs": graphs}))
    trtexec = tmp_path / "trtexec"
    trtexec.write_text(FAKE_TRTEXEC)
    trtexec.chmod(0o755)
    env = dict(os.environ)
    env.pop("FAKE_TRTEXEC_FAIL", None)
    env.update(SIDEMAN_MODELS_DIR=str(models), SIDEMAN_STATE_DIR=str(state), TRTEXEC=str(trtexec),
               FAKE_TRTEXEC_LOG=str(tmp_path / "trtexec.log"))
    return {"env": env, "transformer": transformer, "engines": state / "engines", "calls": tmp_path / "trtexec.log"}


def engine_build(env: dict) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, str(ENGINE_BUILD)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    status_path = Path(env["SIDEMAN_STATE_DIR"]) / "engines" / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    return proc.returncode, status, proc.stdout


def test_engine_build_success(engine_env):
    rc, status, out = engine_build(engine_env["env"])
    assert rc == 0, out
    assert status["backend"] == "tensorrt", status
    assert status["trt_version"] == "8.6.2"
    engines = engine_env["engines"]
    assert sorted(status["engines"]) == ["decoder", "encoder"]
    for name in ("encoder", "decoder"):
        plan = engines / f"{name}.plan"
        assert plan.is_file() and plan.read_text().startswith("fake-plan:")
        assert status["engines"][name]["plan"] == str(plan)
    assert not list(engines.glob(".*.tmp-*")), "temp plans renamed away"
    assert (engines / ".built").is_file()
    calls = engine_env["calls"].read_text().splitlines()
    assert len(calls) == 2
    for call in calls:
        assert "--fp16" in call.split() and "--minShapes=tokens:1x1" in call.split()
        assert any(a.startswith("--onnx=") and a.endswith(".onnx") for a in call.split())


def test_engine_build_checksum_mismatch_falls_back_without_trtexec(engine_env):
    (engine_env["transformer"] / "decoder.onnx").write_bytes(b"tampered\n")
    rc, status, out = engine_build(engine_env["env"])
    assert rc == 0, out
    assert status["backend"] == "markov"
    assert "checksum mismatch" in status["reason"] and "decoder" in status["reason"]
    assert not engine_env["calls"].exists(), "trtexec must not run on unverified graphs"
    assert not list(engine_env["engines"].glob("*.plan"))


def test_engine_build_missing_manifest_falls_back(engine_env):
    (engine_env["transformer"] / "manifest.json").unlink()
    rc, status, out = engine_build(engine_env["env"])
    assert rc == 0, out
    assert status["backend"] == "markov" and "manifest" in status["reason"]
    assert not engine_env["calls"].exists()


def test_engine_build_missing_onnx_falls_back(engine_env):
    (engine_env["transformer"] / "encoder.onnx").unlink()
    rc, status, _ = engine_build(engine_env["env"])
    assert rc == 0 and status["backend"] == "markov" and "missing" in status["reason"]


def test_engine_build_trtexec_failure_falls_back(engine_env):
    env = dict(engine_env["env"], FAKE_TRTEXEC_FAIL="--onnx=")
    rc, status, out = engine_build(env)
    assert rc == 0, out
    assert status["backend"] == "cpu"
    assert "trtexec failed" in status["reason"] and "unsupported ONNX op" in status["reason"]
    assert not list(engine_env["engines"].glob("*.plan"))
    assert not list(engine_env["engines"].glob(".*.tmp-*"))
    assert (engine_env["engines"] / "encoder.trtexec.log").is_file()


def test_engine_build_second_graph_failing_publishes_no_plan(engine_env):
    env = dict(engine_env["env"], FAKE_TRTEXEC_FAIL="decoder.onnx")
    rc, status, out = engine_build(env)
    assert rc == 0, out
    assert status["backend"] == "cpu" and "decoder" in status["reason"]
    assert len(engine_env["calls"].read_text().splitlines()) == 2  # the encoder did build
    assert not list(engine_env["engines"].glob("*.plan")), "a half-built set is never published"
    assert not list(engine_env["engines"].glob(".*.tmp-*"))


def test_engine_build_without_trtexec_falls_back(engine_env, tmp_path):
    env = dict(engine_env["env"], TRTEXEC=str(tmp_path / "no-such-trtexec"))
    rc, status, out = engine_build(env)
    assert rc == 0, out
    assert status["backend"] == "cpu" and "trtexec not found" in status["reason"]


def test_engine_build_rejects_path_arguments_in_manifest(engine_env):
    manifest = engine_env["transformer"] / "manifest.json"
    data = json.loads(manifest.read_text())
    data["graphs"][0]["trtexec_args"] = ["--saveEngine=/etc/passwd"]
    manifest.write_text(json.dumps(data))
    rc, status, _ = engine_build(engine_env["env"])
    assert rc == 0 and status["backend"] == "markov"
    assert not engine_env["calls"].exists()


def test_engine_build_script_is_executable_python():
    mode = ENGINE_BUILD.stat().st_mode
    assert mode & stat.S_IXUSR and ENGINE_BUILD.read_text().startswith("#!/usr/bin/python3\n")
