"""Builds the compiled hot path (engine/_fast/*.pyx).

Every .pyx in engine/_fast is a required extension: there is no pure-Python fallback, so a
missing compiler fails the install instead of producing a slow proxy. SLUICE_DEBUG=1 builds
with the debug counters on (live connections, streams, pooled sockets)."""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("SLUICE_DEBUG") == "1"
macros = [("SLUICE_DEBUG", "1" if debug else "0"), ("NPY_NO_DEPRECATED_API", "0")][:1]
cflags = ["-O3" if not debug else "-O0", "-g"]

extensions = [
    Extension(
        "engine._fast." + os.path.splitext(os.path.basename(path))[0],
        [path],
        define_macros=macros,
        extra_compile_args=cflags,
    )
    for path in sorted(glob.glob("engine/_fast/*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compile_time_env={"SLUICE_DEBUG": debug},
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
