"""Build script: compiles every ``nova/_core/*.pyx`` kernel.

Compiler directives are set here, once, for every kernel.

Environment:
    NOVA_DEBUG_BUILD=1   build with -O0 -g and Cython's bounds/wraparound/initialized
                         checks turned back on (for debugging a kernel).
"""

import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
DEBUG = os.environ.get("NOVA_DEBUG_BUILD", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
    "always_allow_keywords": True,
}

if DEBUG:
    compile_args = ["-O0", "-g3", "-UNDEBUG"]
else:
    compile_args = ["-O3"]

macros = [("NPY_NO_DEPRECATED_API", "NPY_1_22_API_VERSION")]
if DEBUG:
    macros.append(("NOVA_DEBUG", "1"))

import Cython

(HERE / "nova" / "_core" / "_build_info.py").write_text(
    '"""Written by setup.py at build time; not committed."""\n'
    f"CYTHON_VERSION = {Cython.__version__!r}\n"
    f"NUMPY_VERSION = {np.__version__!r}\n"
    f"DEBUG = {DEBUG!r}\n"
)

extensions = [
    Extension(
        f"nova._core.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[np.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for pyx in sorted((HERE / "nova" / "_core").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=False,
    ),
)
