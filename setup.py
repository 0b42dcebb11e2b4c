"""Builds craft._craft: the C core, storage, wire, uv runtime and simulator of c/src plus the
binding in python/src, as one extension module, against the system's libuv, msgpack-c and
OpenSSL; and the command-line tools of c/tools that the package ships (craft/bin/craft-dump,
started by the console script of the same name, craft.tools).

Metadata lives in pyproject.toml; this file describes the extension and the tools (the markupsafe
shape), and gives the version, read from c/include/craft.h (CRAFT_VERSION_STRING), the one place
it is written. MANIFEST.in lists what the sdist carries for this to work from it.
"""

import glob
import os
import re
import shlex
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def rel(pattern):
    """Sources relative to setup.py (setuptools wants relative paths), sorted for stable builds."""
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def craft_version():
    with open(os.path.join(HERE, "c", "include", "craft.h")) as f:
        m = re.search(r'^#define CRAFT_VERSION_STRING "([^"]+)"', f.read(), re.M)
    if m is None:
        raise RuntimeError("CRAFT_VERSION_STRING not found in c/include/craft.h")
    return m.group(1)


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


# Every layer folder of c/src (core, storage, wire, uv, sim): a new one is compiled in without
# editing this file.
C_LAYERS = sorted(os.path.basename(d) for d in glob.glob(os.path.join(HERE, "c", "src", "*"))
                  if glob.glob(os.path.join(d, "*.c")))
sources = []
for layer in C_LAYERS:
    sources += rel(f"c/src/{layer}/*.c")
sources += rel("python/src/*.c")
depends = rel("c/include/*.h") + rel("c/include/craft/*.h") + rel("c/src/*/*.h") + rel("python/src/*.h")

uv_cflags, uv_libs = pkg_config("libuv")
mp_cflags, mp_libs = pkg_config("msgpack-c", "msgpack")
ssl_cflags, ssl_libs = pkg_config("openssl")  # TLS and the cluster secret (docs/security.md)
libs = uv_libs + mp_libs + ssl_libs
if not any(f.startswith("-luv") for f in libs):
    libs.append("-luv")
if not any(f.startswith("-lmsgpack") for f in libs):
    libs.append("-lmsgpackc")
if not any(f.startswith("-lssl") for f in libs):
    libs += ["-lssl", "-lcrypto"]

ext = Extension(
    "craft._craft",
    sources=sources,
    depends=depends,
    include_dirs=["c/include", "c/src", "python/src"],
    extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"] + uv_cflags + mp_cflags + ssl_cflags,
    extra_link_args=libs + ["-lpthread", "-lm"],
)

# The programs shipped in the package, under craft/bin/: name -> (main source, the layers of
# c/src it links). craft-dump reads a data directory with the storage layer alone.
TOOLS = {
    "craft-dump": ("c/tools/craft_dump.c", ["core", "storage"]),
}


class BuildExt(build_ext):
    """Compiles the ~70 C files on every core (setuptools compiles one at a time otherwise), then
    links the tools of TOOLS from the same object files."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self):
        super().run()
        self.build_tools()

    def build_tools(self):
        # Beside the extension: build/lib*/craft/bin (what the wheel packs) or, with --inplace
        # (pip install -e), python/craft/bin.
        out_dir = os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), "bin")
        for name, (main, layers) in TOOLS.items():
            lib_sources = [s for s in ext.sources
                           if any(s.startswith(os.path.join("c", "src", layer) + os.sep)
                                  for layer in layers)]
            # The layers' objects are the extension's (same flags); compile only those missing
            # (the extension was up to date and build_temp was cleaned), and the tool's main.
            objects = self.compiler.object_filenames(lib_sources, output_dir=self.build_temp)
            missing = [s for s, o in zip(lib_sources, objects) if not os.path.exists(o)]
            compile_args = dict(output_dir=self.build_temp, include_dirs=ext.include_dirs,
                                extra_postargs=ext.extra_compile_args, depends=ext.depends)
            if missing:
                self.compiler.compile(missing, **compile_args)
            objects += self.compiler.compile([main], **compile_args)
            self.compiler.link_executable(objects, name, output_dir=out_dir,
                                          libraries=["pthread", "m"])


setup(version=craft_version(), ext_modules=[ext], cmdclass={"build_ext": BuildExt})
