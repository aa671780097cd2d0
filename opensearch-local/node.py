#!/usr/bin/env python3
"""Assemble, start and stop a real single-node OpenSearch on 127.0.0.1.

The node is built from Maven Central artifacts listed in ``pom.xml`` beside this
file: the official minimal distribution, the standard modules as bundles, and
plugin zips installed with the distribution's own ``bin/opensearch-plugin``.
Everything downloaded or written lives in a cache outside the checkout.

Usage::

    python opensearch-local/node.py fetch      # download + assemble (cached)
    python opensearch-local/node.py start      # fetch if needed, start, wait
    python opensearch-local/node.py wait       # wait until the cluster is green
    python opensearch-local/node.py status
    python opensearch-local/node.py stop
    python opensearch-local/node.py wipe       # stop, delete data/logs/snapshots

Environment:
    AUDIT_OPENSEARCH_HOME   cache folder (default ~/.cache/audit-middleware/opensearch)
    AUDIT_OPENSEARCH_PORT   HTTP port (default 9200); transport uses port + 100
    AUDIT_OPENSEARCH_HEAP   JVM heap (default 1g)
    AUDIT_OPENSEARCH_PLUGINS_DIR  extra plugin zips to install (default <home>/plugins.d)
    AUDIT_OPENSEARCH_NODE_DIR     data, logs, snapshots and pid of this node (default <home>/node)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LAUNCHER = HERE / "LocalNode.java"
OPENSEARCH_VERSION = "2.19.4"

# Module bundles added beside the distribution's own transport-netty4:
# folder -> (plugin class, description, security policy grants or "").
MODULES: dict[str, tuple[str, str, str]] = {
    "lang-painless": (
        "org.opensearch.painless.PainlessPlugin",
        "An easy, safe and fast scripting language for OpenSearch",
        'permission java.lang.RuntimePermission "createClassLoader";\n'
        '  permission java.lang.RuntimePermission "getClassLoader";',
    ),
    "lang-mustache": (
        "org.opensearch.script.mustache.MustachePlugin",
        "Mustache scripting integration for OpenSearch",
        'permission java.lang.RuntimePermission "accessDeclaredMembers";',
    ),
    "analysis-common": (
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        "Adds common analysis filters and tokenizers",
        "",
    ),
    "mapper-extras": (
        "org.opensearch.index.mapper.MapperExtrasPlugin",
        "Adds advanced field mappers",
        "",
    ),
    "parent-join": (
        "org.opensearch.join.ParentJoinPlugin",
        "This module adds the support parent-child queries and aggregations",
        "",
    ),
    "percolator": (
        "org.opensearch.percolator.PercolatorPlugin",
        "Percolator module adds capability to index queries and query these queries",
        "",
    ),
    "aggs-matrix-stats": (
        "org.opensearch.search.aggregations.matrix.MatrixAggregationPlugin",
        "Adds aggregations whose input are a list of numeric fields",
        "",
    ),
    "ingest-common": (
        "org.opensearch.ingest.common.IngestCommonPlugin",
        "Module for ingest processors that do not require additional security permissions",
        "",
    ),
    "reindex": (
        "org.opensearch.index.reindex.ReindexPlugin",
        "The Reindex module adds APIs to reindex from one index to another",
        'permission java.net.SocketPermission "*", "connect";\n'
        '  permission java.net.NetPermission "getProxySelector";',
    ),
}


def home() -> Path:
    default = Path.home() / ".cache" / "audit-middleware" / "opensearch"
    return Path(os.environ.get("AUDIT_OPENSEARCH_HOME", default)).expanduser()


def port() -> int:
    return int(os.environ.get("AUDIT_OPENSEARCH_PORT", "9200"))


def url() -> str:
    return f"http://127.0.0.1:{port()}"


def plugins_dir() -> Path:
    return Path(os.environ.get("AUDIT_OPENSEARCH_PLUGINS_DIR", home() / "plugins.d"))


def install_dir() -> Path:
    return home() / f"opensearch-{OPENSEARCH_VERSION}"


def node_dir() -> Path:
    # separate from the install, so tests can run a second node on the same install
    return Path(os.environ.get("AUDIT_OPENSEARCH_NODE_DIR", home() / "node"))


def pid_file() -> Path:
    return node_dir() / "opensearch.pid"


def log(message: str) -> None:
    print(f"[opensearch-local] {message}", file=sys.stderr, flush=True)


def java_home() -> str:
    for candidate in (os.environ.get("OPENSEARCH_JAVA_HOME"), os.environ.get("JAVA_HOME")):
        if candidate and (Path(candidate) / "bin" / "java").exists():
            return candidate
    java = shutil.which("java")
    if not java:
        raise SystemExit("java not found: install a JDK 11+ or set JAVA_HOME")
    return str(Path(java).resolve().parent.parent)


def assembly_fingerprint() -> str:
    """Changes when the pom, this script or the extra plugin zips change."""
    digest = hashlib.sha256(POM.read_bytes())
    digest.update(LAUNCHER.read_bytes())
    digest.update(repr(MODULES).encode())
    for extra in sorted(plugins_dir().glob("*.zip")):
        digest.update(extra.name.encode())
        digest.update(str(extra.stat().st_size).encode())
    return digest.hexdigest()


def fetch() -> Path:
    """Download with Maven and assemble the distribution, unless cached."""
    target = install_dir()
    stamp = target / ".assembled"
    fingerprint = assembly_fingerprint()
    if stamp.exists() and stamp.read_text() == fingerprint:
        return target
    if not shutil.which("mvn"):
        raise SystemExit("mvn not found: install Maven to fetch the local OpenSearch")
    work = home() / "maven"
    stage = work / "stage"
    shutil.rmtree(work, ignore_errors=True)
    log("fetching OpenSearch artifacts with Maven (first run only)")
    subprocess.run(
        ["mvn", "-B", "-q", "-f", str(POM), "package", f"-Dstage={stage}", f"-Dwork={work}"],
        check=True,
    )
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(stage / "dist" / f"opensearch-{OPENSEARCH_VERSION}"), str(target))
    for name, (classname, description, grants) in MODULES.items():
        bundle = target / "modules" / name
        shutil.move(str(stage / "modules" / name), str(bundle))
        write_descriptor(bundle, name, classname, description)
        if grants:
            (bundle / "plugin-security.policy").write_text(f"grant {{\n  {grants}\n}};\n")
    zips = sorted((stage / "plugins").glob("*.zip")) + sorted(plugins_dir().glob("*.zip"))
    for plugin_zip in zips:
        install_plugin(target, plugin_zip)
    subprocess.run(
        [
            str(Path(java_home()) / "bin" / "javac"),
            "-d",
            str(target / "launcher"),
            "-cp",
            str(target / "lib" / "*"),
            str(LAUNCHER),
        ],
        check=True,
    )
    shutil.rmtree(work, ignore_errors=True)
    stamp.write_text(fingerprint)
    log(f"assembled {target}")
    return target


def write_descriptor(bundle: Path, name: str, classname: str, description: str) -> None:
    properties = {
        "description": description,
        "version": OPENSEARCH_VERSION,
        "name": name,
        "classname": classname,
        "java.version": "11",
        "opensearch.version": OPENSEARCH_VERSION,
        "custom.foldername": "",
        "extended.plugins": "",
        "has.native.controller": "false",
    }
    text = "".join(f"{key}={value}\n" for key, value in properties.items())
    (bundle / "plugin-descriptor.properties").write_text(text)


def install_plugin(target: Path, plugin_zip: Path) -> None:
    log(f"installing plugin {plugin_zip.name}")
    env = dict(os.environ, OPENSEARCH_JAVA_HOME=java_home(), OPENSEARCH_PATH_CONF=str(target / "config"))
    env.pop("OPENSEARCH_JAVA_OPTS", None)
    subprocess.run(
        [str(target / "bin" / "opensearch-plugin"), "install", "--batch", plugin_zip.resolve().as_uri()],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def installed_plugins(target: Path) -> list[str]:
    return sorted(p.name for p in (target / "plugins").iterdir() if p.is_dir())


def write_config(target: Path) -> Path:
    """Node settings live in node/config, so the assembled install stays pristine."""
    config = node_dir() / "config"
    config.mkdir(parents=True, exist_ok=True)
    for name in ("jvm.options", "log4j2.properties"):
        shutil.copy(target / "config" / name, config / name)
    (config / "jvm.options.d").mkdir(exist_ok=True)
    for sub in ("data", "logs", "snapshots"):
        (node_dir() / sub).mkdir(parents=True, exist_ok=True)
    settings = {
        "cluster.name": "audit-middleware-local",
        "node.name": "local-1",
        "network.host": "127.0.0.1",
        "http.port": port(),
        "transport.port": port() + 100,
        "discovery.type": "single-node",
        "path.data": str(node_dir() / "data"),
        "path.logs": str(node_dir() / "logs"),
        "path.repo": [str(node_dir() / "snapshots")],
        # a busy developer disk must not flip audit indices to read-only
        "cluster.routing.allocation.disk.threshold_enabled": False,
        # one node holds no replicas; without this every index keeps the cluster yellow
        "cluster.default_number_of_replicas": 0,
    }
    plugins = installed_plugins(target)
    if "opensearch-index-management" in plugins:
        # the minimum, so retention tests see ISM act within minutes
        settings["plugins.index_state_management.job_interval"] = 1
    lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    (config / "opensearch.yml").write_text("\n".join(lines) + "\n")
    return config


def read_pid() -> int | None:
    try:
        pid = int(pid_file().read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def http_get(path: str, timeout: float = 2.0) -> dict[str, Any] | list[Any] | None:
    try:
        # url() is always http://127.0.0.1:<port>: no user-controlled scheme
        with urllib.request.urlopen(url() + path, timeout=timeout) as response:  # noqa: S310
            loaded: dict[str, Any] | list[Any] = json.loads(response.read())
            return loaded
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def start() -> None:
    if read_pid() is not None:
        log(f"already running (pid {read_pid()}) at {url()}")
        wait()
        return
    if http_get("/") is not None:
        raise SystemExit(f"port {port()} already answers HTTP: stop that server or set AUDIT_OPENSEARCH_PORT")
    target = fetch()
    config = write_config(target)
    started = time.monotonic()
    console = node_dir() / "logs" / "console.log"
    with console.open("ab") as out:
        process = subprocess.Popen(
            java_command(target, config),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command, like a daemon
        )
    pid_file().write_text(str(process.pid))
    wait()
    log(f"started at {url()} in {time.monotonic() - started:.1f}s; logs in {node_dir() / 'logs'}")


def java_command(target: Path, config: Path) -> list[str]:
    tmp = node_dir() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return [
        str(Path(java_home()) / "bin" / "java"),
        f"-Xms{heap()}",
        f"-Xmx{heap()}",
        "-XX:+UseG1GC",
        "-XX:-OmitStackTraceInFastThrow",
        "-Dfile.encoding=UTF-8",
        "-Djava.awt.headless=true",
        "-Djna.nosys=true",
        "-Dlog4j.shutdownHookEnabled=false",
        "-Dlog4j2.disable.jmx=true",
        f"-Djava.io.tmpdir={tmp}",
        f"-Dopensearch.path.home={target}",
        f"-Dopensearch.path.conf={config}",
        "-cp",
        f"{target / 'lib' / '*'}{os.pathsep}{target / 'launcher'}",
        "LocalNode",
    ]


def heap() -> str:
    return os.environ.get("AUDIT_OPENSEARCH_HEAP", "1g")


def wait(timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = http_get("/_cluster/health?wait_for_status=green&timeout=1s", timeout=5)
        if isinstance(health, dict) and health.get("status") == "green":
            return
        if read_pid() is None:
            break  # the JVM exited: no point waiting
        time.sleep(0.5)
    logs = node_dir() / "logs"
    raise SystemExit(
        f"OpenSearch did not become green at {url()}; "
        f"see {logs}/console.log and {logs}/audit-middleware-local.log"
    )


def stop(timeout: float = 60.0) -> None:
    pid = read_pid()
    if pid is None:
        log("not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid() is not None:
        time.sleep(0.2)
    if read_pid() is not None:
        os.kill(pid, signal.SIGKILL)
    pid_file().unlink(missing_ok=True)
    log("stopped")


def wipe() -> None:
    stop()
    shutil.rmtree(node_dir(), ignore_errors=True)
    log(f"wiped {node_dir()}")


def status() -> None:
    pid = read_pid()
    info = http_get("/")
    plugins = http_get("/_cat/plugins?format=json")
    print(
        json.dumps(
            {
                "url": url(),
                "pid": pid,
                "version": info.get("version", {}).get("number") if isinstance(info, dict) else None,
                "plugins": sorted({p["component"] for p in plugins}) if isinstance(plugins, list) else [],
                "home": str(home()),
            },
            indent=2,
        )
    )


def java_available() -> bool:
    try:
        java_home()
    except SystemExit:
        return False
    return True


def main() -> None:
    commands = {"fetch": fetch, "start": start, "wait": wait, "stop": stop, "wipe": wipe, "status": status}
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(commands))
    parser.add_argument(
        "--optional",
        action="store_true",
        help="without Java (and not under CI=true), say so and exit 0: integration tests then skip",
    )
    args = parser.parse_args()
    if args.optional and not java_available() and os.environ.get("CI") != "true":
        log("Java not found: not starting OpenSearch; integration tests will be skipped")
        return
    commands[args.command]()


if __name__ == "__main__":
    main()
