"""The arm64 environment's caching rules, without building anything (these run in `make test`)."""

from __future__ import annotations

from tools.arm64.environment import Arm64Environment, Step, _unpack_wheel, source_digest, wheel_platforms


def test_a_step_counts_as_done_only_with_its_own_key(tmp_path):
    step = Step("site", tmp_path / "site", "key-1")
    assert not step.done()
    partial = step.start()
    (partial / "numpy").mkdir()
    assert not step.done()  # built but not renamed into place: an interrupted build
    step.finish()
    assert step.done() and (tmp_path / "site" / "numpy").is_dir()
    assert not Step("site", tmp_path / "site", "key-2").done()  # the requirements changed


def test_restarting_a_step_drops_the_old_result_and_a_stale_partial(tmp_path):
    old = Step("sysroot", tmp_path / "sysroot", "a")
    old.start()
    old.finish()
    stale = tmp_path / "sysroot.partial"
    stale.mkdir()
    (stale / "half.deb").write_text("x")
    new = Step("sysroot", tmp_path / "sysroot", "b")
    partial = new.start()
    assert list(partial.iterdir()) == [] and not (tmp_path / "sysroot").exists() and not new.stamp.exists()


def test_wheel_platforms_cover_every_glibc_up_to_the_devices():
    tags = wheel_platforms((2, 36))
    assert "manylinux_2_27_aarch64" in tags and "manylinux_2_36_aarch64" in tags  # LiteRT's and the sysroot's
    assert "manylinux_2_37_aarch64" not in tags and "manylinux2014_aarch64" in tags


def test_source_digest_follows_every_file_of_the_package(tmp_path):
    package = tmp_path / "edgekit"
    (package / "splitter").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "splitter" / "split.proto").write_text("a")
    first = source_digest(package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert source_digest(package) == first  # caches do not count
    (package / "splitter" / "split.proto").write_text("b")
    assert source_digest(package) != first


def test_a_wheel_with_a_path_outside_the_site_is_refused(tmp_path):
    import zipfile

    import pytest

    from tools.arm64.environment import BuildError

    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("../outside.py", "x")
    with pytest.raises(BuildError, match="unsafe member path"):
        _unpack_wheel(wheel, tmp_path / "site")
    assert not (tmp_path / "outside.py").exists()


def test_the_emulated_command_pins_the_cpu_and_binds_the_cpuinfo():
    env = Arm64Environment()
    command = env.command("-c", "pass")
    assert command[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert "cortex-a76" in command and command[command.index("-L") + 1] == str(env.sysroot)
    assert command[-4:] == ["-S", "-P", "-c", "pass"]
