"""A file:// GOPROXY with two versions of example.com/hello, and an app per version
that prints its greeting: what the boot test and the container tests build with Go,
on machines with no network. Usage: goproxy.py PROXY_DIR APP_DIR [VERSION...]
(an app for each VERSION, in APP_DIR/VERSION; one VERSION: the app in APP_DIR)."""

import json
import os
import sys
import zipfile

MOD = "example.com/hello"
VERSIONS = ["v1.0.0", "v1.1.0"]


def proxy(at):
    at = os.path.join(at, MOD, "@v")
    os.makedirs(at)
    with open(os.path.join(at, "list"), "w") as f:
        f.write("\n".join(VERSIONS) + "\n")
    for v in VERSIONS:
        gomod = f"module {MOD}\n\ngo 1.19\n"
        with open(os.path.join(at, v + ".info"), "w") as f:
            json.dump({"Version": v, "Time": "2024-01-01T00:00:00Z"}, f)
        with open(os.path.join(at, v + ".mod"), "w") as f:
            f.write(gomod)
        with zipfile.ZipFile(os.path.join(at, v + ".zip"), "w") as z:
            z.writestr(f"{MOD}@{v}/go.mod", gomod)
            z.writestr(f"{MOD}@{v}/hello.go", f'package hello\n\nfunc Greeting() string {{ return "hello {v}" }}\n')


def app(at, version):
    os.makedirs(at)
    with open(os.path.join(at, "go.mod"), "w") as f:
        f.write(f"module app\n\ngo 1.19\n\nrequire {MOD} {version}\n")
    with open(os.path.join(at, "main.go"), "w") as f:
        f.write(f'package main\n\nimport (\n\t"fmt"\n\n\t"{MOD}"\n)\n\nfunc main() {{ fmt.Println(hello.Greeting()) }}\n')


if __name__ == "__main__":
    proxy_dir, app_dir, versions = sys.argv[1], sys.argv[2], sys.argv[3:] or ["v1.0.0"]
    proxy(proxy_dir)
    if len(versions) == 1:
        app(app_dir, versions[0])
    else:
        for v in versions:
            app(os.path.join(app_dir, v), v)
