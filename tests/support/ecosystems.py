"""Real package files for the RPM, Go and Java inventory tests, built with Debian's own tools.

- :func:`build_go_binary`: a program built offline by Debian's Go (``golang-go``) with one
  dependency that a ``replace`` directive points at a local directory, so its build info has
  ``path``, ``mod``, ``dep`` and ``=>`` lines.
- :func:`build_rpmdb`: an ``rpmdb.sqlite`` written by Debian's ``rpm`` after ``rpmbuild`` made
  two trivial packages (one with an epoch); RPM 4.18's default backend is SQLite.
- :func:`java_archives`: the real jars of Debian's Java library packages (``/usr/share/java``;
  ``libmaven3-core-java`` alone brings some twenty, with no JRE), and :func:`build_war` a web
  archive nesting real jars under ``WEB-INF/lib``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

JAVA = Path("/usr/share/java")

# An Alpine apk installed database in apk-tools' documented format, as Alpine 3.19 writes it
# (two packages; libcrypto3 built from the openssl origin).
APK_INSTALLED = b"""C:Q1kNsGxkYFVYSJtbH2zyaMk5h4QIs=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407255
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1705428390
c:0c04d6c5bae6f2ee4bc4f2c6a8bc1c5d0e0d6c2d
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Ej3Ej1xF5jmpF6uY0ZJHzxjhxo0=

C:Q1lkj6BPhwEIcjNhNrkNd0pSDuA7Q=
P:libcrypto3
V:3.1.4-r5
A:x86_64
S:1748364
I:4399104
T:Crypto library from openssl
U:https://www.openssl.org/
L:Apache-2.0
o:openssl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1706884442
c:ee8f8e4bd3b6d1e6a0d2e1d6a4b7c3f2a1e0d9c8
F:usr/lib
R:libcrypto.so.3

"""


def have_go() -> bool:
    return shutil.which("go") is not None


def have_rpm() -> bool:
    return shutil.which("rpm") is not None and shutil.which("rpmbuild") is not None


def build_go_binary(work: Path) -> Path:
    """``work/app``: module ``example.com/app`` requiring ``example.com/greet v1.4.2``,
    replaced by ``../greet``; built with no network (``GOPROXY=off``)."""
    greet, app = work / "greet", work / "app"
    greet.mkdir(parents=True)
    app.mkdir()
    (greet / "go.mod").write_text("module example.com/greet\n\ngo 1.19\n")
    (greet / "greet.go").write_text('package greet\n\nfunc Hello() string { return "hello" }\n')
    (app / "go.mod").write_text(
        "module example.com/app\n\ngo 1.19\n\nrequire example.com/greet v1.4.2\n\n"
        "replace example.com/greet v1.4.2 => ../greet\n"
    )
    (app / "main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\n'
        "func main() { fmt.Println(greet.Hello()) }\n"
    )
    binary = work / "app.bin"
    go_build(app, binary, work)
    return binary


def go_build(module: Path, binary: Path, work: Path) -> None:
    """``go build`` of ``module`` into ``binary`` with Debian's Go, no network (``GOPROXY=off``)
    and every cache under ``work``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "GOPATH": str(work / "gopath"),
        "GOCACHE": str(work / "gocache"),
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
    }
    subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=module,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


SPEC = """Name: {name}
{epoch}Version: {version}
Release: {release}
Summary: A trivial package for the inventory tests
License: MIT
BuildArch: noarch

%description
Built by the registry-gatekeeper tests.

%install
mkdir -p %{{buildroot}}/usr/share/{name}
echo {name} > %{{buildroot}}/usr/share/{name}/README

%files
/usr/share/{name}/README
"""

PACKAGES = (
    {"name": "gatekeeper-hello", "epoch": "2", "version": "1.2.3", "release": "4.el9"},
    {"name": "gatekeeper-tools", "epoch": "", "version": "0.9", "release": "1.el9"},
)
"""What :func:`build_rpmdb` installs (name, epoch, version, release); all ``noarch``."""


def build_rpmdb(work: Path) -> Path:
    """``rpmdb.sqlite`` holding :data:`PACKAGES`, made by ``rpmbuild`` and ``rpm --justdb``."""
    top, db = work / "rpmbuild", work / "rpmdb"
    (top / "SPECS").mkdir(parents=True)
    db.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work)}
    for package in PACKAGES:
        epoch = f"Epoch: {package['epoch']}\n" if package["epoch"] else ""
        spec = top / "SPECS" / f"{package['name']}.spec"
        spec.write_text(SPEC.format(**{**package, "epoch": epoch}))
        subprocess.run(
            ["rpmbuild", "--define", f"_topdir {top}", "-bb", str(spec)],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    rpms = sorted(str(p) for p in (top / "RPMS").rglob("*.rpm"))
    for args in (["--initdb"], ["-i", "--nodeps", "--justdb", *rpms]):
        subprocess.run(
            ["rpm", "--dbpath", str(db), *args], env=env, check=True, capture_output=True
        )
    return db / "rpmdb.sqlite"


def java_archives() -> list[Path]:
    """Every jar file in /usr/share/java (the unversioned symlinks to them left out)."""
    return sorted(p for p in JAVA.glob("*.jar") if p.is_file() and not p.is_symlink())


def build_war(nested: list[Path]) -> bytes:
    """A web archive with ``nested`` (real jars) under ``WEB-INF/lib`` and a manifest."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as war:
        war.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n\n")
        for jar in nested:
            war.write(jar.resolve(), f"WEB-INF/lib/{jar.name}")
    return out.getvalue()
