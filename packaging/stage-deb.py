"""Stages the Debian package that Cargo.toml's [package.metadata.deb]
declares and packs it with dpkg-deb, for machines without cargo-deb.

    python3 packaging/stage-deb.py BIN_DIR OUT_DIR   # prints the .deb's path

It follows the subset of cargo-deb's metadata this project uses: assets
([source, destination, mode]; a destination ending in / is a folder;
target/release/ is read from BIN_DIR), conf-files, maintainer, section,
priority, recommends, extended-description. Dependencies come from
dpkg-shlibdeps when it is there, else libc6.
"""

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib


def main() -> None:
    bin_dir, out_dir = sys.argv[1], sys.argv[2]
    with open("Cargo.toml", "rb") as f:
        cargo = tomllib.load(f)
    package = cargo["package"]
    deb = package["metadata"]["deb"]
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()
    name, version = package["name"], package["version"]
    stage = tempfile.mkdtemp(prefix="azw-deb-")
    os.chmod(stage, 0o755)
    try:
        binaries = []
        for source, dest, mode in deb["assets"]:
            if source.startswith("target/release/"):
                source = os.path.join(bin_dir, source[len("target/release/"):])
            target = os.path.join(stage, dest)
            if dest.endswith("/"):
                target = os.path.join(target, os.path.basename(source))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(source, target)
            os.chmod(target, int(mode, 8))
            if dest.startswith("usr/bin/"):
                binaries.append(target)
        # A Debian changelog, as lintian expects.
        doc = os.path.join(stage, "usr/share/doc", name)
        os.makedirs(doc, exist_ok=True)
        with gzip.open(os.path.join(doc, "changelog.gz"), "wt") as f:
            f.write(f"{name} ({version}) unstable; urgency=low\n\n  * Release {version}.\n\n"
                    f" -- {deb['maintainer']} <noreply@localhost>  Thu, 01 Jan 2026 00:00:00 +0000\n")
        os.chmod(os.path.join(doc, "changelog.gz"), 0o644)
        depends = shlib_depends(stage, binaries) or "libc6"
        size = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(stage) for f in fs
        ) // 1024
        control_dir = os.path.join(stage, "DEBIAN")
        os.makedirs(control_dir)
        description = deb["extended-description"].strip().replace("\n", " ")
        lines = [
            f"Package: {name}",
            f"Version: {version}",
            f"Architecture: {arch}",
            f"Maintainer: {deb['maintainer']}",
            f"Installed-Size: {size}",
            f"Depends: {depends}",
            f"Recommends: {deb['recommends']}",
            f"Section: {deb['section']}",
            f"Priority: {deb['priority']}",
            f"Description: {package['description']}",
            f" {description}",
        ]
        write(os.path.join(control_dir, "control"), "\n".join(lines) + "\n", 0o644)
        write(os.path.join(control_dir, "conffiles"), "\n".join(deb["conf-files"]) + "\n", 0o644)
        # The unit is known to systemd at once; enabling it is left to the
        # administrator (after setting log-dir in azw.toml).
        write(
            os.path.join(control_dir, "postinst"),
            "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi\n",
            0o755,
        )
        write(
            os.path.join(control_dir, "postrm"),
            "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi\n",
            0o755,
        )
        os.makedirs(out_dir, exist_ok=True)
        out = os.path.join(out_dir, f"{name}_{version}_{arch}.deb")
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage, out],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(out)
    finally:
        shutil.rmtree(stage)


def shlib_depends(stage: str, binaries: list[str]) -> str:
    """The shared-library dependencies of the binaries, as dpkg-shlibdeps
    finds them; empty if it cannot."""
    if not shutil.which("dpkg-shlibdeps"):
        return ""
    work = tempfile.mkdtemp(prefix="azw-shlibdeps-")
    try:
        os.makedirs(os.path.join(work, "debian"))
        write(os.path.join(work, "debian/control"), "Source: x\n\nPackage: x\nArchitecture: any\n", 0o644)
        result = subprocess.run(
            ["dpkg-shlibdeps", "-O", *[os.path.abspath(b) for b in binaries]],
            cwd=work,
            capture_output=True,
            text=True,
        )
        for line in result.stdout.splitlines():
            if line.startswith("shlibs:Depends="):
                return line.split("=", 1)[1]
        return ""
    finally:
        shutil.rmtree(work)


def write(path: str, text: str, mode: int) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


if __name__ == "__main__":
    main()
