"""The build and the chooser: which implementation is active, and that it is the right one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import nova
from nova import _core


def _run(code: str, **env: str) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NOVA_")}
    full_env.update(env)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_compiled_kernels_required_when_asked():
    """CI sets NOVA_REQUIRE_EXTENSIONS=1: then the compiled kernels must be active."""
    if os.environ.get("NOVA_REQUIRE_EXTENSIONS", "") not in ("", "0"):
        assert nova.USING_EXTENSIONS, f"compiled kernels not in use: {_core.IMPORT_ERROR}"
        from nova.events import Event

        assert Event.__module__ == "nova._core.event"
        assert _core.kernel("hashing").__file__.endswith((".so", ".pyd"))
    else:
        # Not required: the flag must still tell the truth.
        assert nova.USING_EXTENSIONS == (not _core.NO_EXTENSIONS and _core.compiled_available())


def test_no_extensions_env_selects_pure():
    out = _run(
        """
        import nova
        from nova import _core
        from nova.events import Event
        print(nova.USING_EXTENSIONS, Event.__module__, _core.murmur2.__module__)
        """,
        NOVA_NO_EXTENSIONS="1",
    )
    assert out == "False nova._core.event_py nova._core.hashing_py"


def test_default_selects_compiled_when_built():
    if not _core.compiled_available():
        pytest.fail("compiled kernels are not built; run `pip install -e .`")
    out = _run(
        """
        import nova
        from nova.events import Event
        print(nova.USING_EXTENSIONS, Event.__module__)
        """
    )
    assert out == "True nova._core.event"


def test_require_extensions_fails_loudly_when_missing():
    # Simulate a broken build: hide the compiled modules from the import system.
    code = """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name in ("nova._core.hashing", "nova._core.event"):
                    raise ImportError("simulated broken build")
                return None
        sys.meta_path.insert(0, Block())
        try:
            import nova
        except ImportError as exc:
            print("ImportError", "NOVA_REQUIRE_EXTENSIONS" in str(exc))
        else:
            print("imported", nova.USING_EXTENSIONS)
    """
    assert _run(code, NOVA_REQUIRE_EXTENSIONS="1") == "ImportError True"
    assert _run(code) == "imported False"


def test_show_versions(capsys):
    info = nova.show_versions()
    printed = capsys.readouterr().out
    for key in ("nova", "python", "numpy", "cython (build)", "implementation"):
        assert key in info and key in printed
    assert info["nova"] == nova.__version__
    if nova.USING_EXTENSIONS:
        assert info["implementation"].startswith("compiled")
        assert info["cython (build)"][0].isdigit()
    else:
        assert info["implementation"].startswith("pure")


def test_kernel_lookup_errors():
    with pytest.raises(KeyError, match="kernel name"):
        _core.kernel("nope")
    with pytest.raises(ValueError, match="implementation 'c' or 'py'"):
        _core.implementation("rust")
    with pytest.raises(AttributeError):
        _core.implementation("py").no_such_name
    with pytest.raises(AttributeError):
        _core.no_such_name  # noqa: B018


def test_pure_and_compiled_export_the_same_names():
    for name, names in _core.KERNELS.items():
        py = _core.kernel(name, pure=True)
        assert set(names) <= set(py.__all__), name
        if _core.compiled_available() and not _core.NO_EXTENSIONS:
            c = _core.kernel(name, pure=False)
            assert set(names) <= set(c.__all__), name
