"""Builds the compiled hot path (engine/_fast/*.pyx).

Every .pyx in engine/_fast is a required extension: there is no pure-Python fallback, so a
missing compiler fails the install instead of producing a slow proxy.

Two builds (docs/operations.md, "The debug build"):
  release (default)   -O3, the C macro SLUICE_DEBUG=0: debug-only code compiles to nothing.
  SLUICE_DEBUG=1      -O1 with C assertions (-UNDEBUG), SLUICE_DEBUG=1: the live-object
                      counters of engine/_fast/debug.pyx count, and the test suite checks them.
Both come from the same generated C (the flag is a C macro, not a Cython compile-time constant),
so switching builds recompiles the C but never re-runs Cython. setuptools decides that an
extension is up to date from timestamps alone, which would keep a release .so after
`SLUICE_DEBUG=1 pip install -e .`: every extension therefore depends on build/sluice-build,
a file rewritten (and so newer than every .so) whenever the build flavor changes."""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

flavor = os.environ.get("SLUICE_DEBUG", "0")
if flavor not in ("0", "1", ""):
    raise SystemExit(f"SLUICE_DEBUG={flavor!r}: 1 builds the debug build, 0 (or unset) release")
debug = flavor == "1"
macros = [("SLUICE_DEBUG", "1" if debug else "0")]
cflags = ["-O1", "-g", "-fno-omit-frame-pointer", "-UNDEBUG"] if debug else ["-O3", "-g"]

STAMP = os.path.join("build", "sluice-build")


def stamp(text: str) -> str:
    """Write `text` to STAMP unless it is already there; the path, for `depends`."""
    try:
        with open(STAMP) as f:
            if f.read() == text:
                return STAMP
    except OSError:
        pass
    os.makedirs(os.path.dirname(STAMP), exist_ok=True)
    with open(STAMP, "w") as f:
        f.write(text)
    return STAMP


depends = [stamp(f"SLUICE_DEBUG={int(debug)} {' '.join(cflags)}\n")]

extensions = [
    Extension(
        "engine._fast." + os.path.splitext(os.path.basename(path))[0],
        [path],
        define_macros=macros,
        extra_compile_args=cflags,
        depends=depends,
    )
    for path in sorted(glob.glob("engine/_fast/*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
