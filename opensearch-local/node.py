#!/usr/bin/env python3
"""Assemble, start and stop a real OpenSearch on 127.0.0.1: one node, or a small cluster.

The node is built from Maven Central artifacts listed in ``pom.xml`` beside this
file: the official minimal distribution, the standard modules as bundles, and
plugin zips installed with the distribution's own ``bin/opensearch-plugin``.
Extra plugin zips (ISM and Alerting, which Maven Central does not serve) come from
``AUDIT_OPENSEARCH_PLUGINS_DIR``; when that folder holds a ``SHA256SUMS`` file, every
zip must be listed there and match. Everything downloaded or written lives in a cache
outside the checkout; the install is re-assembled when the pom, the launcher, the
assembly code of this script or the set of extra plugin zips (names and contents) changes,
and never while a node runs from it.

Single node (what ``make test`` uses)::

    python opensearch-local/node.py fetch      # download + assemble (cached)
    python opensearch-local/node.py start      # fetch if needed, start, wait until ready
    python opensearch-local/node.py wait       # wait until ready (see below)
    python opensearch-local/node.py status
    python opensearch-local/node.py stop
    python opensearch-local/node.py wipe       # stop, delete data/logs/snapshots

"Ready" for the single node means: it answers, the cluster settings a single node needs
are applied through the cluster settings API (``cluster.default_number_of_replicas: 0``,
which has no effect in opensearch.yml, and with ISM
``plugins.index_state_management.history.number_of_replicas: 0``), every index that is
yellow only because a replica cannot be placed on one node is set to
``number_of_replicas: 0``, and the cluster is green. ISM runs with a 1-minute job interval
and no jitter.

Cluster of N nodes (for failover tests; replicas are *not* forced to 0 there)::

    python opensearch-local/node.py cluster start [--nodes 3]   # start all, wait green
    python opensearch-local/node.py cluster status               # JSON: nodes, pids, health
    python opensearch-local/node.py cluster wait                 # green with all N nodes
    python opensearch-local/node.py cluster kill 2 [--signal TERM] [--wait-left]  # default SIGKILL
    python opensearch-local/node.py cluster start-node 2         # start it again, wait green
    python opensearch-local/node.py cluster stop
    python opensearch-local/node.py cluster wipe

Node ``i`` (1-based) is named ``node-i``, listens on HTTP ``base_http + i - 1`` and
transport ``base_transport + i - 1`` (defaults 9211.. and 9311..), keeps data, logs,
config and pid in ``<cluster dir>/node-i``, and shares ``<cluster dir>/snapshots`` as
``path.repo``. ``cluster start`` records the layout in ``<cluster dir>/cluster.json``, so
the later sub-commands need no ``--nodes``.

The same, as Python functions a pytest fixture can import (``importlib`` from this path;
``make test`` exports AUDIT_OPENSEARCH_PLUGINS_DIR to pytest, so the nodes a fixture starts
use the same install as the single node)::

    layout = cluster_start(nodes=3)        # -> list[ClusterNode]; waits green, all nodes in
    layout[0].url                          # 'http://127.0.0.1:9211'
    cluster_kill(2)                        # SIGKILL node-2, returns once the process is gone
    cluster_kill(2, wait_left=True)        # ... and once the survivors see 2 nodes
    cluster_start_node(2)                  # start it again; waits green seen from node-2
    cluster_status()                       # dict, as the CLI prints it
    cluster_stop()

    # lower level, for a layout of your own (no waiting inside start_node):
    pid = start_node("n1", http_port=9221, transport_port=9321,
                     seeds=[9321, 9322, 9323], heap="512m",
                     cluster_managers=["n1", "n2", "n3"], directory=Path("/tmp/n1"))
    health = wait_green(9221, nodes=3, pid=pid)    # -> the _cluster/health body
    wait_nodes(9222, 2)                            # until node 9222 sees exactly 2 nodes
    kill(pid)                                      # SIGKILL (or sig=signal.SIGTERM)

Environment:
    AUDIT_OPENSEARCH_HOME   cache folder (default ~/.cache/audit-middleware/opensearch)
    AUDIT_OPENSEARCH_PORT   HTTP port of the single node (default 9200); transport uses port + 100
    AUDIT_OPENSEARCH_HEAP   JVM heap of the single node (default 1g)
    AUDIT_OPENSEARCH_PLUGINS_DIR  extra plugin zips to install (default <home>/plugins.d;
                                  an empty value means the default)
    AUDIT_OPENSEARCH_NODE_DIR     data, logs, snapshots and pid of the single node (default <home>/node)
    AUDIT_OPENSEARCH_CLUSTER_DIR        the cluster's nodes (default <home>/cluster)
    AUDIT_OPENSEARCH_CLUSTER_NODES      node count for ``cluster start`` (default 3)
    AUDIT_OPENSEARCH_CLUSTER_HTTP_PORT  HTTP port of node-1 (default 9211)
    AUDIT_OPENSEARCH_CLUSTER_TRANSPORT_PORT  transport port of node-1 (default 9311)
    AUDIT_OPENSEARCH_CLUSTER_HEAP       JVM heap of each cluster node (default 512m)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LAUNCHER = HERE / "LocalNode.java"
OPENSEARCH_VERSION = "2.19.4"
SINGLE_CLUSTER_NAME = "audit-middleware-local"
MULTI_CLUSTER_NAME = "audit-middleware-cluster"
ISM = "opensearch-index-management"

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

# Popen objects of nodes this process started, so that a killed child is reaped, not a zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


# ---------------------------------------------------------------- locations and settings


def home() -> Path:
    default = Path.home() / ".cache" / "audit-middleware" / "opensearch"
    return Path(os.environ.get("AUDIT_OPENSEARCH_HOME", default)).expanduser()


def port() -> int:
    return int(os.environ.get("AUDIT_OPENSEARCH_PORT", "9200"))


def url(http_port: int | None = None) -> str:
    return f"http://127.0.0.1:{port() if http_port is None else http_port}"


def heap() -> str:
    return os.environ.get("AUDIT_OPENSEARCH_HEAP", "1g")


def plugins_dir() -> Path:
    configured = os.environ.get("AUDIT_OPENSEARCH_PLUGINS_DIR", "")
    return Path(configured).expanduser() if configured else home() / "plugins.d"


def install_dir() -> Path:
    return home() / f"opensearch-{OPENSEARCH_VERSION}"


def node_dir() -> Path:
    # separate from the install, so tests can run a second node on the same install
    return Path(os.environ.get("AUDIT_OPENSEARCH_NODE_DIR", home() / "node"))


def pid_file(directory: Path | None = None) -> Path:
    return (node_dir() if directory is None else directory) / "opensearch.pid"


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


# ---------------------------------------------------------------- extra plugins


@dataclass(frozen=True)
class PluginBundle:
    """An extra plugin zip, checked against SHA256SUMS when the folder has one."""

    path: Path
    sha256: str
    name: str
    extends: tuple[str, ...]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(sums: Path) -> dict[str, str]:
    """``sha256sum`` output: ``<hex>  <file>`` (or ``<hex> *<file>`` in binary mode)."""
    listed: dict[str, str] = {}
    for number, line in enumerate(sums.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise SystemExit(f"{sums}:{number}: not a sha256sum line: {line!r}")
        name = parts[1].strip().lstrip("*")
        listed[Path(name).name] = parts[0].lower()
    return listed


def descriptor(plugin_zip: Path) -> dict[str, str]:
    with zipfile.ZipFile(plugin_zip) as archive:
        names = [n for n in archive.namelist() if n.endswith("plugin-descriptor.properties")]
        if not names:
            raise SystemExit(f"{plugin_zip} is not an OpenSearch plugin zip: no plugin-descriptor.properties")
        text = archive.read(min(names, key=len)).decode("utf-8")
    properties: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            properties[key.strip()] = value.strip()
    return properties


def plugin_bundles() -> list[PluginBundle]:
    """The extra plugin zips, verified, in an order that installs dependencies first."""
    folder = plugins_dir()
    if not folder.is_dir():
        if os.environ.get("AUDIT_OPENSEARCH_PLUGINS_DIR"):
            raise SystemExit(f"AUDIT_OPENSEARCH_PLUGINS_DIR={folder} is not a directory")
        return []
    zips = sorted(folder.glob("*.zip"))
    sums = folder / "SHA256SUMS"
    listed = read_checksums(sums) if sums.exists() else None
    if listed is not None:
        missing = sorted(set(listed) - {z.name for z in zips})
        if missing:
            raise SystemExit(f"{sums} lists {', '.join(missing)}, missing from {folder}")
    bundles: dict[str, PluginBundle] = {}
    for plugin_zip in zips:
        actual = sha256_of(plugin_zip)
        if listed is not None:
            expected = listed.get(plugin_zip.name)
            if expected is None:
                raise SystemExit(f"{plugin_zip} is not listed in {sums}")
            if expected != actual:
                raise SystemExit(
                    f"checksum mismatch for {plugin_zip}: {sums} says {expected}, file is {actual}"
                )
        props = descriptor(plugin_zip)
        extends = tuple(p.strip() for p in props.get("extended.plugins", "").split(",") if p.strip())
        name = props.get("name", plugin_zip.stem)
        bundles[name] = PluginBundle(plugin_zip, actual, name, extends)
    ordered: list[PluginBundle] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        bundle = bundles.get(name)
        if bundle is None or bundle in ordered:
            return  # a module, a Maven plugin (installed first) or already placed
        if name in chain:
            raise SystemExit(f"plugins extend each other in a cycle: {' -> '.join((*chain, name))}")
        for parent in bundle.extends:
            visit(parent, (*chain, name))
        ordered.append(bundle)

    for name in sorted(bundles):
        visit(name, ())
    return ordered


# ---------------------------------------------------------------- assembly


def assembly_fingerprint(bundles: Sequence[PluginBundle] | None = None) -> str:
    """Changes when the pom, the launcher, the assembly code below or the extra plugin zips change.

    Only the code that builds the install counts, so that editing the rest of this script
    (start, wait, cluster) does not cost a re-assembly.
    """
    digest = hashlib.sha256(POM.read_bytes())
    digest.update(LAUNCHER.read_bytes())
    digest.update(repr((OPENSEARCH_VERSION, MODULES)).encode())
    for code in (assemble, write_descriptor, install_plugin):
        digest.update(inspect.getsource(code).encode())
    for bundle in plugin_bundles() if bundles is None else bundles:
        digest.update(f"\0{bundle.path.name}\0{bundle.sha256}".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def assembly_lock() -> Iterator[None]:
    """One assembly at a time per home, also across processes (CLI and pytest fixtures)."""
    home().mkdir(parents=True, exist_ok=True)
    with (home() / ".assembly.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch() -> Path:
    """Download with Maven and assemble the distribution, unless cached."""
    target = install_dir()
    stamp = target / ".assembled"
    bundles = plugin_bundles()
    fingerprint = assembly_fingerprint(bundles)
    if stamp.exists() and stamp.read_text() == fingerprint:
        return target
    with assembly_lock():
        if stamp.exists() and stamp.read_text() == fingerprint:
            return target  # another process assembled it meanwhile
        busy = pids_running_from(target)
        if busy:
            raise SystemExit(
                f"{target} must be re-assembled (pom, launcher, assembly code or plugin set changed) but "
                f"OpenSearch pid(s) {', '.join(map(str, busy))} run from it: stop them first"
            )
        assemble(target, bundles)
        stamp.write_text(fingerprint)
    return target


def assemble(target: Path, bundles: Sequence[PluginBundle]) -> None:
    if not shutil.which("mvn"):
        raise SystemExit("mvn not found: install Maven to fetch the local OpenSearch")
    started = time.monotonic()
    work = home() / "maven"
    stage = work / "stage"
    shutil.rmtree(work, ignore_errors=True)
    log("fetching OpenSearch artifacts with Maven (first run, or the assembly inputs changed)")
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
    # Maven's plugins (job-scheduler) first: the extra bundles may extend them
    zips = sorted((stage / "plugins").glob("*.zip")) + [b.path for b in bundles]
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
    log(f"assembled {target} in {time.monotonic() - started:.1f}s; plugins: {installed_plugins(target)}")


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


# ---------------------------------------------------------------- processes


def _proc_cmdline(pid: int) -> str | None:
    try:
        return (
            (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return None


def pids_running_from(target: Path) -> list[int]:
    """Java processes whose path.home is this install (Linux /proc; empty elsewhere)."""
    marker = f"-Dopensearch.path.home={target}"
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        cmdline = _proc_cmdline(int(entry.name))
        if cmdline and marker + " " in cmdline + " " and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def pid_alive(pid: int) -> bool:
    """True while the process runs: a zombie (killed, not yet reaped) counts as gone."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def read_pid(directory: Path | None = None) -> int | None:
    """The pid of the node whose pid file is in ``directory``, if it still runs."""
    try:
        pid = int(pid_file(directory).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    cmdline = _proc_cmdline(pid)
    if cmdline is not None and "LocalNode" not in cmdline:
        return None  # the pid was reused by an unrelated process
    return pid


def kill(pid: int, sig: int = signal.SIGKILL, timeout: float = 60.0) -> None:
    """Send ``sig`` to a node and return once it has exited (SIGKILL after ``timeout``)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.1)


def port_busy(number: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", number)) == 0


# ---------------------------------------------------------------- node config and launch


def write_config(target: Path, directory: Path, settings: dict[str, Any]) -> Path:
    """Node settings live in <directory>/config, so the assembled install stays pristine."""
    config = directory / "config"
    config.mkdir(parents=True, exist_ok=True)
    for name in ("jvm.options", "log4j2.properties"):
        shutil.copy(target / "config" / name, config / name)
    (config / "jvm.options.d").mkdir(exist_ok=True)
    for sub in ("data", "logs", "tmp"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    for repo in settings.get("path.repo", []):
        Path(repo).mkdir(parents=True, exist_ok=True)
    lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    (config / "opensearch.yml").write_text("\n".join(lines) + "\n")
    return config


def common_settings(
    target: Path, directory: Path, name: str, http_port: int, transport_port: int
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "node.name": name,
        "network.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "path.data": str(directory / "data"),
        "path.logs": str(directory / "logs"),
        # a busy developer disk must not flip audit indices to read-only
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    if ISM in installed_plugins(target):
        # the minimum, so retention tests see ISM act within minutes; without jitter (up to
        # 60% of the interval by default), at predictable times
        settings["plugins.index_state_management.job_interval"] = 1
        settings["plugins.index_state_management.jitter"] = 0.0
    return settings


def java_command(target: Path, directory: Path, heap_size: str) -> list[str]:
    return [
        str(Path(java_home()) / "bin" / "java"),
        f"-Xms{heap_size}",
        f"-Xmx{heap_size}",
        "-XX:+UseG1GC",
        "-XX:-OmitStackTraceInFastThrow",
        "-Dfile.encoding=UTF-8",
        "-Djava.awt.headless=true",
        "-Djna.nosys=true",
        "-Dlog4j.shutdownHookEnabled=false",
        "-Dlog4j2.disable.jmx=true",
        f"-Djava.io.tmpdir={directory / 'tmp'}",
        f"-Dopensearch.path.home={target}",
        f"-Dopensearch.path.conf={directory / 'config'}",
        "-cp",
        f"{target / 'lib' / '*'}{os.pathsep}{target / 'launcher'}",
        "LocalNode",
    ]


def launch(target: Path, directory: Path, heap_size: str) -> int:
    """Start the JVM for the config in ``directory`` (written already); returns its pid."""
    console = directory / "logs" / "console.log"
    with console.open("ab") as out:
        process = subprocess.Popen(
            java_command(target, directory, heap_size),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command, like a daemon
        )
    _CHILDREN[process.pid] = process
    pid_file(directory).write_text(str(process.pid))
    return process.pid


# ---------------------------------------------------------------- HTTP


def http(
    method: str, path: str, body: Any = None, *, http_port: int | None = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """(status, parsed JSON body); status 0 when nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url(http_port) + path, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    try:
        # url() is always http://127.0.0.1:<port>: no user-controlled scheme
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode(errors="replace")


def http_get(
    path: str, timeout: float = 2.0, http_port: int | None = None
) -> dict[str, Any] | list[Any] | None:
    status, body = http("GET", path, http_port=http_port, timeout=timeout)
    return body if status == 200 and isinstance(body, (dict, list)) else None


def not_green_indices(http_port: int) -> list[dict[str, Any]]:
    rows = http_get("/_cat/indices?format=json&h=index,health,status,rep&expand_wildcards=all", 10, http_port)
    return (
        [r for r in rows if isinstance(r, dict) and r.get("health") != "green"]
        if isinstance(rows, list)
        else []
    )


def _health(http_port: int, nodes: int | None) -> dict[str, Any] | None:
    query = "wait_for_status=green&timeout=1s" + (f"&wait_for_nodes=%3E%3D{nodes}" if nodes else "")
    status, body = http("GET", f"/_cluster/health?{query}", http_port=http_port, timeout=10)
    # 408 carries the health body too (timed out waiting for green)
    return body if status in (200, 408) and isinstance(body, dict) else None


def _not_ready(http_port: int, what: str, directory: Path | None) -> SystemExit:
    detail = ""
    if http_get("/", http_port=http_port) is not None:
        bad = not_green_indices(http_port)
        if bad:
            detail = "; not green: " + ", ".join(f"{r['index']} ({r['health']}, rep {r['rep']})" for r in bad)
    logs = f"; see {directory / 'logs'}/console.log" if directory else ""
    return SystemExit(f"OpenSearch at {url(http_port)} {what}{detail}{logs}")


def wait_green(
    http_port: int,
    timeout: float = 240.0,
    *,
    nodes: int | None = None,
    pid: int | None = None,
    directory: Path | None = None,
) -> dict[str, Any]:
    """Wait until the node on ``http_port`` reports green (and at least ``nodes`` nodes).

    Returns the ``_cluster/health`` body. Raises SystemExit on timeout, or as soon as
    ``pid`` (when given) has exited. Does not change any setting: for a cluster.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = _health(http_port, nodes)
        if (
            health
            and health.get("status") == "green"
            and int(health.get("number_of_nodes", 0)) >= (nodes or 1)
        ):
            return health
        if pid is not None and not pid_alive(pid):
            raise _not_ready(http_port, f"exited (pid {pid}) before turning green", directory)
        time.sleep(0.5)
    nodes_text = f" with {nodes} nodes" if nodes else ""
    raise _not_ready(http_port, f"did not turn green{nodes_text} within {timeout:.0f}s", directory)


def wait_nodes(http_port: int, count: int, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until the node on ``http_port`` sees exactly ``count`` nodes (e.g. after a kill).

    Returns the ``_cluster/health`` body, whatever its colour.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http("GET", f"/_cluster/health?wait_for_nodes={count}&timeout=1s", http_port=http_port)
        if status == 200 and isinstance(body, dict) and body.get("number_of_nodes") == count:
            return body
        time.sleep(0.2)
    raise SystemExit(f"{url(http_port)} did not see {count} node(s) within {timeout:.0f}s")


def is_single_node(http_port: int) -> bool | None:
    """Whether the node runs with discovery.type=single-node; None while it cannot tell yet."""
    body = http_get("/_nodes/settings?filter_path=nodes.*.settings.discovery.type", 10, http_port)
    if not isinstance(body, dict) or not body.get("nodes"):
        return None
    types = [n.get("settings", {}).get("discovery", {}).get("type") for n in body["nodes"].values()]
    return types == ["single-node"]


def single_node_settings(http_port: int) -> dict[str, Any]:
    """What a one-node cluster needs, only through the cluster settings API (not opensearch.yml)."""
    settings: dict[str, Any] = {"cluster.default_number_of_replicas": 0}
    plugins = http_get("/_cat/plugins?format=json&h=component", 10, http_port)
    if isinstance(plugins, list) and any(p.get("component") == ISM for p in plugins):
        settings["plugins.index_state_management.history.number_of_replicas"] = 0
    return settings


def drop_single_node_replicas(http_port: int) -> list[str]:
    """Set number_of_replicas 0 on each yellow index: on one node a replica is never placed."""
    fixed = []
    for row in not_green_indices(http_port):
        if row.get("health") == "yellow" and str(row.get("rep")) != "0":
            name = str(row["index"])
            status, body = http(
                "PUT",
                f"/{urllib.parse.quote(name, safe='')}/_settings",
                {"index": {"number_of_replicas": 0}},
                http_port=http_port,
                timeout=30,
            )
            if status == 200:
                fixed.append(name)
            else:
                log(f"could not drop the replicas of {name}: HTTP {status} {body}")
    if fixed:
        log(f"single node: set number_of_replicas 0 on {', '.join(sorted(fixed))}")
    return fixed


def clear_archived_settings(http_port: int) -> None:
    """Drop settings the node archived because no plugin knew them when it last started.

    Data kept from a run with another plugin set holds them, and while they exist every
    cluster settings update is refused with 400.
    """
    status, body = http(
        "PUT",
        "/_cluster/settings",
        {"persistent": {"archived.*": None}, "transient": {"archived.*": None}},
        http_port=http_port,
        timeout=30,
    )
    log(f"cleared archived cluster settings: HTTP {status}" + ("" if status == 200 else f" {body}"))


def wait_single_node(
    http_port: int, timeout: float = 180.0, pid: int | None = None, directory: Path | None = None
) -> dict[str, Any]:
    """Wait until a single node answers, apply its cluster settings, drop stray replicas, be green."""
    deadline = time.monotonic() + timeout
    applied = False
    refused = 0
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            raise _not_ready(http_port, f"exited (pid {pid}) before turning green", directory)
        if not applied:
            single = is_single_node(http_port) if http_get("/", http_port=http_port) is not None else None
            if single is None:
                time.sleep(0.5)
                continue
            if not single:
                log(f"{url(http_port)} is not a discovery.type=single-node node: only waiting for green")
                return wait_green(
                    http_port, max(1.0, deadline - time.monotonic()), pid=pid, directory=directory
                )
            status, body = http(
                "PUT",
                "/_cluster/settings",
                {"persistent": single_node_settings(http_port)},
                http_port=http_port,
                timeout=30,
            )
            if status == 400 and "archived." in json.dumps(body):
                clear_archived_settings(http_port)
            if status != 200:  # e.g. 503 while the node elects itself cluster manager
                refused += 1
                if refused % 20 == 1:
                    log(f"cluster settings not applied yet: HTTP {status} {json.dumps(body)[:300]}")
                time.sleep(0.5)
                continue
            applied = True
        health = _health(http_port, None)
        if health and health.get("status") == "green":
            return health
        if health and health.get("status") == "yellow":
            drop_single_node_replicas(http_port)
        time.sleep(0.5)
    raise _not_ready(http_port, f"did not turn green within {timeout:.0f}s", directory)


# ---------------------------------------------------------------- the single node


def start(fresh: bool = False) -> None:
    if fresh:  # the state of a newcomer's first run, whatever earlier runs left in the folder
        wipe()
    if read_pid() is not None:
        log(f"already running (pid {read_pid()}) at {url()}")
        wait()
        return
    if http_get("/") is not None:
        raise SystemExit(f"port {port()} already answers HTTP: stop that server or set AUDIT_OPENSEARCH_PORT")
    target = fetch()
    settings = {
        "cluster.name": SINGLE_CLUSTER_NAME,
        **common_settings(target, node_dir(), "local-1", port(), port() + 100),
        "discovery.type": "single-node",
        "path.repo": [str(node_dir() / "snapshots")],
        # cluster.default_number_of_replicas has no effect here: wait() sets it through the API
    }
    write_config(target, node_dir(), settings)
    started = time.monotonic()
    pid = launch(target, node_dir(), heap())
    wait_single_node(port(), pid=pid, directory=node_dir())
    log(f"started at {url()} in {time.monotonic() - started:.1f}s (green); logs in {node_dir() / 'logs'}")


def wait(timeout: float = 180.0) -> None:
    wait_single_node(port(), timeout, pid=read_pid(), directory=node_dir())


def stop(timeout: float = 60.0) -> None:
    pid = read_pid()
    if pid is None:
        log("not running")
        pid_file().unlink(missing_ok=True)
        return
    kill(pid, signal.SIGTERM, timeout)
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
    health = http_get("/_cluster/health")
    print(
        json.dumps(
            {
                "url": url(),
                "pid": pid,
                "version": info.get("version", {}).get("number") if isinstance(info, dict) else None,
                "health": health.get("status") if isinstance(health, dict) else None,
                "plugins": sorted({p["component"] for p in plugins}) if isinstance(plugins, list) else [],
                "home": str(home()),
                "plugins_dir": str(plugins_dir()),
            },
            indent=2,
        )
    )


# ---------------------------------------------------------------- a cluster of N nodes


@dataclass(frozen=True)
class ClusterNode:
    """One node of the local cluster; ``index`` is 1-based."""

    index: int
    name: str
    http_port: int
    transport_port: int
    directory: Path

    @property
    def url(self) -> str:
        return url(self.http_port)

    def pid(self) -> int | None:
        return read_pid(self.directory)


def cluster_dir() -> Path:
    return Path(os.environ.get("AUDIT_OPENSEARCH_CLUSTER_DIR", home() / "cluster")).expanduser()


def _layout_file() -> Path:
    return cluster_dir() / "cluster.json"


def cluster_layout(nodes: int | None = None) -> list[ClusterNode]:
    """The cluster's nodes: as ``cluster start`` recorded them, else from the environment."""
    recorded: dict[str, Any] = {}
    if _layout_file().exists():
        recorded = json.loads(_layout_file().read_text())
    if nodes is None:
        nodes = int(recorded.get("nodes") or os.environ.get("AUDIT_OPENSEARCH_CLUSTER_NODES", "3"))
        http_base = int(
            recorded.get("http_port") or os.environ.get("AUDIT_OPENSEARCH_CLUSTER_HTTP_PORT", "9211")
        )
        transport_base = int(
            recorded.get("transport_port")
            or os.environ.get("AUDIT_OPENSEARCH_CLUSTER_TRANSPORT_PORT", "9311")
        )
    else:
        http_base = int(os.environ.get("AUDIT_OPENSEARCH_CLUSTER_HTTP_PORT", "9211"))
        transport_base = int(os.environ.get("AUDIT_OPENSEARCH_CLUSTER_TRANSPORT_PORT", "9311"))
    if nodes < 1:
        raise SystemExit("a cluster needs at least one node")
    return [
        ClusterNode(i, f"node-{i}", http_base + i - 1, transport_base + i - 1, cluster_dir() / f"node-{i}")
        for i in range(1, nodes + 1)
    ]


def cluster_heap() -> str:
    return os.environ.get("AUDIT_OPENSEARCH_CLUSTER_HEAP", "512m")


def start_node(
    name: str,
    http_port: int,
    transport_port: int,
    seeds: Sequence[int | str],
    heap: str = "512m",
    *,
    cluster_managers: Sequence[str] = (),
    directory: Path | None = None,
    cluster_name: str = MULTI_CLUSTER_NAME,
    repo: Path | None = None,
) -> int:
    """Start one node of a multi-node cluster on 127.0.0.1 and return its pid (no waiting).

    ``seeds`` are transport ports on 127.0.0.1 (or "host:port" strings) of the cluster's
    nodes; ``cluster_managers`` the node names that bootstrap a new cluster (all initial
    nodes; harmless once the cluster exists). Data, logs, config and the pid file go to
    ``directory`` (default ``<cluster dir>/<name>``); ``repo`` (default
    ``<cluster dir>/snapshots``) is ``path.repo``, shared by the nodes.
    """
    directory = cluster_dir() / name if directory is None else directory
    running = read_pid(directory)
    if running is not None:
        raise SystemExit(f"{name} already runs (pid {running}) from {directory}")
    for number in (http_port, transport_port):
        if port_busy(number):
            raise SystemExit(f"port {number} on 127.0.0.1 is in use: cannot start {name}")
    target = fetch()
    settings = {
        "cluster.name": cluster_name,
        **common_settings(target, directory, name, http_port, transport_port),
        "discovery.seed_hosts": [s if isinstance(s, str) else f"127.0.0.1:{s}" for s in seeds],
        "path.repo": [str(cluster_dir() / "snapshots" if repo is None else repo)],
    }
    if cluster_managers:
        settings["cluster.initial_cluster_manager_nodes"] = list(cluster_managers)
    write_config(target, directory, settings)
    pid = launch(target, directory, heap)
    log(f"started {name} (pid {pid}) at {url(http_port)}, transport {transport_port}")
    return pid


def _start_cluster_node(node: ClusterNode, layout: Sequence[ClusterNode], heap_size: str) -> int:
    return start_node(
        node.name,
        node.http_port,
        node.transport_port,
        [n.transport_port for n in layout],
        heap_size,
        cluster_managers=[n.name for n in layout],
        directory=node.directory,
    )


def _cluster_node(index: int) -> tuple[ClusterNode, list[ClusterNode]]:
    layout = cluster_layout()
    if not 1 <= index <= len(layout):
        raise SystemExit(f"no node {index}: the cluster has nodes 1..{len(layout)}")
    return layout[index - 1], layout


def cluster_start(
    nodes: int | None = None, heap: str | None = None, timeout: float = 300.0
) -> list[ClusterNode]:
    """Start every node that is not running and wait until the cluster is green with all of them."""
    running = [n for n in cluster_layout() if n.pid() is not None]
    layout = cluster_layout(nodes)
    if running and nodes is not None and len(layout) != len(cluster_layout()):
        raise SystemExit(f"a cluster of {len(cluster_layout())} nodes is running: `cluster stop` it first")
    heap_size = heap or cluster_heap()
    cluster_dir().mkdir(parents=True, exist_ok=True)
    _layout_file().write_text(
        json.dumps(
            {
                "nodes": len(layout),
                "http_port": layout[0].http_port,
                "transport_port": layout[0].transport_port,
                "heap": heap_size,
            }
        )
    )
    fetch()  # once, before the nodes start
    started = time.monotonic()
    pids = {n.index: n.pid() or _start_cluster_node(n, layout, heap_size) for n in layout}
    for node in layout:  # each answers, and sees the whole cluster green
        remaining = max(1.0, timeout - (time.monotonic() - started))
        wait_green(
            node.http_port, remaining, nodes=len(layout), pid=pids[node.index], directory=node.directory
        )
    urls = ", ".join(n.url for n in layout)
    log(f"cluster of {len(layout)} green in {time.monotonic() - started:.1f}s: {urls}")
    return layout


def cluster_wait(timeout: float = 300.0) -> dict[str, Any]:
    layout = cluster_layout()
    return wait_green(layout[0].http_port, timeout, nodes=len(layout), directory=layout[0].directory)


def cluster_start_node(index: int, timeout: float = 300.0) -> ClusterNode:
    """Start node ``index`` again (e.g. after cluster_kill) and wait for green as it sees it."""
    node, layout = _cluster_node(index)
    heap_size = str(json.loads(_layout_file().read_text()).get("heap", cluster_heap()))
    started = time.monotonic()
    pid = node.pid() or _start_cluster_node(node, layout, heap_size)
    # asked of the restarted node itself: its view includes its own join, never a stale green
    wait_green(node.http_port, timeout, nodes=len(layout), pid=pid, directory=node.directory)
    log(f"{node.name} back, cluster green in {time.monotonic() - started:.1f}s")
    return node


def cluster_kill(index: int, sig: int = signal.SIGKILL, *, wait_left: bool = False) -> None:
    """Send ``sig`` (default SIGKILL, i.e. kill -9) to node ``index``; returns once it exited.

    Right after a kill -9 the others may still report the old node count and colour for a
    moment; with ``wait_left`` this returns only once a surviving node sees the node gone.
    """
    node, layout = _cluster_node(index)
    pid = node.pid()
    if pid is None:
        log(f"{node.name} is not running")
        return
    kill(pid, sig)
    log(f"{node.name} (pid {pid}) ended by {signal.Signals(sig).name}")
    survivors = [n for n in layout if n is not node and n.pid() is not None]
    if wait_left and survivors:
        started = time.monotonic()
        health = wait_nodes(survivors[0].http_port, len(survivors))
        log(
            f"{survivors[0].name} sees {len(survivors)} node(s), {health.get('status')}, "
            f"after {time.monotonic() - started:.1f}s"
        )


def cluster_stop() -> None:
    layout = cluster_layout()
    pids = [(n, n.pid()) for n in layout]
    for _, pid in pids:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for node, pid in pids:
        if pid is not None:
            kill(pid, signal.SIGTERM)
        pid_file(node.directory).unlink(missing_ok=True)
    log(f"cluster stopped ({sum(1 for _, p in pids if p is not None)} node(s) were running)")


def cluster_wipe() -> None:
    cluster_stop()
    shutil.rmtree(cluster_dir(), ignore_errors=True)
    log(f"wiped {cluster_dir()}")


def cluster_status() -> dict[str, Any]:
    layout = cluster_layout()
    nodes = []
    health: dict[str, Any] | None = None
    for node in layout:
        pid = node.pid()
        answers = http_get("/", http_port=node.http_port) is not None
        nodes.append(
            {
                "name": node.name,
                "url": node.url,
                "transport_port": node.transport_port,
                "pid": pid,
                "answers": answers,
            }
        )
        if answers and health is None:
            body = http_get("/_cluster/health", 10, node.http_port)
            health = body if isinstance(body, dict) else None
    return {
        "cluster_dir": str(cluster_dir()),
        "nodes": nodes,
        "status": health.get("status") if health else None,
        "number_of_nodes": health.get("number_of_nodes") if health else 0,
        "unassigned_shards": health.get("unassigned_shards") if health else None,
    }


# ---------------------------------------------------------------- command line


def java_available() -> bool:
    try:
        java_home()
    except SystemExit:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--optional",
        action="store_true",
        help="without Java (and not under CI=true), say so and exit 0: integration tests then skip",
    )
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("fetch", "start", "wait", "status", "stop", "wipe"):
        commands.add_parser(name, parents=[common])
    commands.choices["start"].add_argument(
        "--fresh", action="store_true", help="stop the node and wipe its data first (what make test does)"
    )
    cluster = commands.add_parser("cluster", parents=[common], help="a local multi-node cluster")
    actions = cluster.add_subparsers(dest="action", required=True)
    start_parser = actions.add_parser("start")
    start_parser.add_argument("--nodes", type=int, help="node count (default 3, or as recorded)")
    start_parser.add_argument("--heap", help="JVM heap per node (default 512m)")
    for name in ("stop", "status", "wait", "wipe"):
        actions.add_parser(name)
    kill_parser = actions.add_parser("kill")
    kill_parser.add_argument("index", type=int)
    kill_parser.add_argument("--signal", default="KILL", help="KILL (default) or TERM")
    kill_parser.add_argument("--wait-left", action="store_true", help="until the others see it gone")
    actions.add_parser("start-node").add_argument("index", type=int)
    args = parser.parse_args(argv)
    if args.optional and not java_available() and os.environ.get("CI") != "true":
        log("Java not found: not starting OpenSearch; integration tests will be skipped")
        return
    if args.command == "start":
        start(fresh=args.fresh)
    elif args.command != "cluster":
        commands_without_options: dict[str, Callable[[], object]] = {
            "fetch": fetch,
            "wait": wait,
            "stop": stop,
            "wipe": wipe,
            "status": status,
        }
        commands_without_options[args.command]()
    elif args.action == "start":
        cluster_start(args.nodes, args.heap)
    elif args.action == "kill":
        sig = signal.Signals[f"SIG{args.signal.upper().removeprefix('SIG')}"]
        cluster_kill(args.index, sig, wait_left=args.wait_left)
    elif args.action == "start-node":
        cluster_start_node(args.index)
    elif args.action == "status":
        print(json.dumps(cluster_status(), indent=2))
    elif args.action == "wait":
        print(json.dumps(cluster_wait(), indent=2))
    else:
        {"stop": cluster_stop, "wipe": cluster_wipe}[args.action]()


if __name__ == "__main__":
    main()
