"""Builds craft._craft: the C core, storage, wire, uv runtime and simulator of c/src plus the
binding in python/src, as one extension module, against the system's libuv and msgpack-c.

Metadata lives in pyproject.toml; this file only describes the extension (the markupsafe shape).
"""

import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
C_LAYERS = ["core", "storage", "wire", "uv", "sim"]


def rel(pattern):
    """Sources relative to setup.py (setuptools wants relative paths), sorted for stable builds."""
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def pkg_config(*names):
    """cflags and libs of the first pkg-config name that exists (msgpack-c is "msgpack" up to
    4.x and "msgpack-c" from 6.x); plain -l flags when pkg-config is missing."""
    for name in names:
        try:
            cflags = subprocess.run(["pkg-config", "--cflags", name], check=True,
                                    capture_output=True, text=True).stdout
            libs = subprocess.run(["pkg-config", "--libs", name], check=True,
                                  capture_output=True, text=True).stdout
            return shlex.split(cflags), shlex.split(libs)
        except (OSError, subprocess.CalledProcessError):
            continue
    return [], []


sources = []
for layer in C_LAYERS:
    sources += rel(f"c/src/{layer}/*.c")
sources += rel("python/src/*.c")
depends = rel("c/include/*.h") + rel("c/include/craft/*.h") + rel("c/src/*/*.h") + rel("python/src/*.h")

uv_cflags, uv_libs = pkg_config("libuv")
mp_cflags, mp_libs = pkg_config("msgpack-c", "msgpack")
libs = uv_libs + mp_libs
if not any(f.startswith("-luv") for f in libs):
    libs.append("-luv")
if not any(f.startswith("-lmsgpack") for f in libs):
    libs.append("-lmsgpackc")

ext = Extension(
    "craft._craft",
    sources=sources,
    depends=depends,
    include_dirs=["c/include", "c/src", "python/src"],
    extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"] + uv_cflags + mp_cflags,
    extra_link_args=libs + ["-lpthread", "-lm"],
)


class BuildExt(build_ext):
    """Compiles the ~70 C files on every core (setuptools compiles one at a time otherwise)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1


setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
