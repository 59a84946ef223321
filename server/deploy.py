"""Operator helpers for a real federation on Flower's Deployment Engine (``flonnx deploy``).

:func:`init_consortium` creates, in one folder, everything a development consortium needs and the
exact commands that use it:

- ``ca/ca.crt``, ``ca/ca.key``: a development certificate authority (EC P-384, self-signed);
- ``superlink/server.crt``, ``superlink/server.key``: the SuperLink's TLS certificate, signed by the CA,
  valid for the given hosts (IP addresses and DNS names as subject alternative names);
- ``nodes/NAME/NAME.key`` (OpenSSH private key, mode 600), ``nodes/NAME/NAME.pub`` and a copy of
  ``ca.crt``: one key pair per node for Flower's node authentication (EC SECP384R1, the format
  ``flower-supernode --auth-supernode-private-key`` and ``flwr supernode register`` read). In a real
  consortium each site makes its own pair (:func:`write_node_keys`, ``flonnx deploy keygen``) and sends
  only the ``.pub``;
- ``app/pyproject.toml``: the Flower App that ``flwr run`` sends. It is a thin shim: components and
  run-config keys naming modules of the flonnx installed at each site, no Python of its own;
- ``flwr-config.toml``: the ``[superlink.NAME]`` connection for ``$FLWR_HOME/config.toml``;
- ``consortium.json`` (every path, port and command, as argument lists) and ``COMMANDS.md`` (the same
  commands for a shell, in order).

The keys are the coordinator's convenience for trying a federation on one machine; the CA key must
never leave the coordinator.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.frameworks import FRAMEWORKS
from flonnx.exchange.spec import RUN_CONFIG_KEYS
from flonnx.server.settings import SERVER_KEYS

__all__ = ["Consortium", "DeployError", "NodePlan", "app_pyproject", "init_consortium", "write_node_keys"]

#: Flower's defaults: the SuperLink's one HTTP(S) port, and the first SuperNode Runtime API port.
SUPERLINK_PORT = 8000
NODE_PORT_BASE = 9094
CONNECTION = "flonnx"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_VALID_DAYS = 365


class DeployError(FlonnxError):
    """A ``flonnx deploy`` input that cannot work (bad host, node name, existing folder …)."""


@dataclass(frozen=True)
class NodePlan:
    """One site: its client id, framework, data file, label column and Runtime API port."""

    name: str
    framework: str
    data: str
    label: str
    port: int
    private_key: str
    public_key: str
    ca: str

    def node_config(self) -> str:
        """The ``--node-config`` string: client id, framework, data file and label."""
        return " ".join(f"{key}={json.dumps(value)}" for key, value in (
            ("client-id", self.name), ("framework", self.framework), ("data", self.data),
            ("label", self.label)))


@dataclass(frozen=True)
class Consortium:
    """What :func:`init_consortium` wrote; ``commands`` are argument lists, ready for a subprocess."""

    folder: Path
    address: str
    listen: str
    port: int
    connection: str
    nodes: tuple[NodePlan, ...]
    commands: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``consortium.json`` document."""
        return {
            "flonnx": _flonnx_version(),
            "folder": str(self.folder),
            "address": self.address,
            "listen": self.listen,
            "port": self.port,
            "connection": self.connection,
            "nodes": [vars(node) | {"node_config": node.node_config()} for node in self.nodes],
            "commands": dict(self.commands),
        }


def _flonnx_version() -> str:
    try:
        return metadata.version("flonnx")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
        return "0+unknown"


def _hosts(hosts: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address | str]:
    parsed: list[ipaddress.IPv4Address | ipaddress.IPv6Address | str] = []
    for host in hosts:
        host = host.strip()
        try:
            parsed.append(ipaddress.ip_address(host))
            continue
        except ValueError:
            pass
        labels = host.rstrip(".").split(".")
        if not host or not all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", lab)
                               for lab in labels):
            raise DeployError(f"--hosts: {host!r} is neither an IP address nor a DNS name")
        parsed.append(host.rstrip("."))
    if not parsed:
        raise DeployError("--hosts: give at least one host name or IP address of the SuperLink")
    return parsed


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_node_keys(name: str, folder: Path) -> tuple[Path, Path]:
    """A node's authentication key pair: ``folder/NAME.key`` (OpenSSH, mode 600) and ``NAME.pub``.

    An existing key is never overwritten (rotating a key means a new name or a new folder).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not _NAME.match(name):
        raise DeployError(f"node name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)")
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    for path in (private, public):
        if path.exists():
            raise DeployError(f"{path} exists: keys are never overwritten (remove it or use another folder)")
    key = ec.generate_private_key(ec.SECP384R1())
    _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    _write_public(public, key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                        serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public


def _certificates(folder: Path, hosts: Sequence[str]) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    valid = (now - dt.timedelta(minutes=5), now + dt.timedelta(days=_VALID_DAYS))
    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "flonnx development CA"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "flonnx development CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA384()))

    parsed = _hosts(hosts)
    names: list[x509.GeneralName] = [
        x509.IPAddress(h) if not isinstance(h, str) else x509.DNSName(h) for h in parsed]
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(parsed[0]))]))
              .issuer_name(ca_name).public_key(server_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(valid[0]).not_valid_after(valid[1])
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA384()))

    ca_crt, server_crt, server_key_path = folder / "ca/ca.crt", folder / "superlink/server.crt", \
        folder / "superlink/server.key"
    _write_private(folder / "ca/ca.key", ca_key.private_bytes(pem, pkcs8, plain))
    _write_public(ca_crt, ca.public_bytes(pem))
    _write_public(server_crt, server.public_bytes(pem))
    _write_private(server_key_path, server_key.private_bytes(pem, pkcs8, plain))
    return ca_crt, server_crt, server_key_path


def app_pyproject(spec: str, registry: str) -> str:
    """The thin Flower App ``flwr run`` sends: components of the installed flonnx, every run-config key.

    ``spec`` and ``registry`` become the defaults of those keys (paths on the coordinator's machine,
    where the ServerApp runs); every other key is ``""`` (the spec's value).
    """
    version = _flonnx_version()
    lines = [
        "# The Flower App of this consortium (written by `flonnx deploy init`). It carries no Python:",
        "# the components name modules of the flonnx installed on the coordinator and at every site.",
        "[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
        "[project]", 'name = "flonnx"', f"version = {json.dumps(version)}",
        'description = "A flonnx federation"', 'license = "Apache-2.0"',
        f"dependencies = [{json.dumps('flonnx==' + version)}]", "",
        "[tool.flwr.app]", 'publisher = "flonnx"', "",
        "[tool.flwr.app.components]", 'serverapp = "flonnx.server.app:app"',
        'clientapp = "flonnx.client.app:app"', "",
        "[tool.flwr.app.config]", f"spec = {json.dumps(spec)}", f"registry = {json.dumps(registry)}",
    ]
    lines += [f'{key} = ""' for key in sorted({*RUN_CONFIG_KEYS, *SERVER_KEYS} - {"spec", "registry"})]
    return "\n".join(lines) + "\n"


def init_consortium(
    folder: Path, *, hosts: Sequence[str], nodes: Sequence[str], frameworks: Sequence[str] = (),
    data_dir: Path | None = None, label: str = "label", listen: str = "0.0.0.0",
    port: int = SUPERLINK_PORT, node_port_base: int = NODE_PORT_BASE, spec: str | None = None,
    registry: Path | None = None, connection: str = CONNECTION,
) -> Consortium:
    """Write a development consortium into ``folder`` (which must be new or empty); see the module."""
    folder = folder.expanduser().resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DeployError(f"{folder} exists and is not an empty folder: choose a new one "
                          "(keys and certificates are never overwritten)")
    names = [n.strip() for n in nodes if n.strip()]
    if not names:
        raise DeployError("--nodes: name at least one node (e.g. hospital-a,hospital-b)")
    for name in names:
        if not _NAME.match(name):
            raise DeployError(f"--nodes: {name!r} is not a valid node name (letters, digits, '.', '_', "
                              "'-'; at most 63)")
    if len(set(names)) != len(names):
        raise DeployError("--nodes: every node needs its own name")
    chosen = list(frameworks) or ["sklearn"]
    for fw in chosen:
        if fw not in FRAMEWORKS:
            raise DeployError(f"--frameworks: {fw!r} is not one of {', '.join(FRAMEWORKS)}")
    if len(chosen) not in (1, len(names)):
        raise DeployError(f"--frameworks: give one framework for all nodes or one per node "
                          f"({len(names)}), not {len(chosen)}")
    for value, what in ((port, "--port"), (node_port_base, "--node-port-base")):
        if not 1 <= value <= 65535 - (len(names) if what == "--node-port-base" else 0):
            raise DeployError(f"{what}: {value} is not a usable TCP port")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", connection):
        raise DeployError(f"--connection: {connection!r} must be letters, digits, '_' or '-'")
    parsed_hosts = _hosts(hosts)
    address_host = str(parsed_hosts[0])
    address = f"[{address_host}]:{port}" if ":" in address_host else f"{address_host}:{port}"

    folder.mkdir(parents=True, exist_ok=True)
    ca_crt, server_crt, server_key = _certificates(folder, hosts)
    data_root = (data_dir.expanduser().resolve() if data_dir else folder / "data")
    plans = []
    for i, name in enumerate(names):
        node_dir = folder / "nodes" / name
        private, public = write_node_keys(name, node_dir)
        _write_public(node_dir / "ca.crt", ca_crt.read_bytes())
        plans.append(NodePlan(
            name=name, framework=chosen[i] if len(chosen) > 1 else chosen[0],
            data=str(data_root / f"{name}.csv"), label=label, port=node_port_base + i,
            private_key=str(private), public_key=str(public), ca=str(node_dir / "ca.crt")))

    spec_path = str(Path(spec).expanduser().resolve()) if spec else str(folder / "federation.toml")
    if not spec:
        _write_public(folder / "federation.toml", _starter_spec(len(names)))
    registry_path = str((registry or folder / "registry").expanduser().resolve())
    _write_public(folder / "app" / "pyproject.toml", app_pyproject(spec_path, registry_path))
    _write_public(folder / "app" / "README.md",
                  "The Flower App of a flonnx consortium: `flwr run` sends this folder (no Python).\n")
    _write_public(folder / "flwr-config.toml",
                  f"[superlink.{connection}]\naddress = {json.dumps(address)}\n"
                  f"root-certificates = {json.dumps(str(ca_crt))}\n")

    bin_dir = Path(sys.executable).parent
    flwr = "flwr"
    commands: dict[str, Any] = {
        "superlink": ["flower-superlink", "--ssl-ca-certfile", str(ca_crt), "--ssl-certfile",
                      str(server_crt), "--ssl-keyfile", str(server_key), "--enable-supernode-auth",
                      "--database", str(folder / "superlink" / "state.db"),
                      "--disable-runtime-dependency-installation", "--host", listen, "--port", str(port)],
        "register": {p.name: [flwr, "supernode", "register", p.public_key, connection] for p in plans},
        "supernode": {p.name: ["flower-supernode", "--superlink", address, "--root-certificates", p.ca,
                               "--auth-supernode-private-key", p.private_key,
                               "--node-config", p.node_config(), "--port", str(p.port)] for p in plans},
        "run": [flwr, "run", str(folder / "app"), connection, "--stream"],
        "nodes": [flwr, "supernode", "list", connection],
    }
    consortium = Consortium(folder=folder, address=address, listen=listen, port=port,
                            connection=connection, nodes=tuple(plans), commands=commands)
    _write_public(folder / "consortium.json", json.dumps(consortium.to_dict(), indent=2) + "\n")
    _write_public(folder / "COMMANDS.md", _commands_md(consortium, bin_dir, spec_path, registry_path))
    return consortium


def _starter_spec(clients: int) -> str:
    return (
        "# The coordinator's federation spec (docs/spec.md). Nodes bring their own data (node config\n"
        "# data= and label=); edit the model to fit their columns, and name an evaluation file if the\n"
        "# coordinator has one.\n"
        'model = "mlp-30-32-2"   # mlp-<features>-<hidden>-<classes>, an .onnx file, or module:callable\n'
        'task = "classification"\n'
        "# evaluate = \"/path/on/the/coordinator/holdout.csv\"\n"
        f"clients = {clients}\n"
        "rounds = 3\n"
        "seed = 0\n"
        'strategy = "fedavg"\n'
    )


def _commands_md(consortium: Consortium, bin_dir: Path, spec: str, registry: str) -> str:
    c = consortium.commands
    sh = shlex.join
    out = [
        "# Commands of this consortium (written by `flonnx deploy init`)", "",
        f"Every command uses absolute paths under `{consortium.folder}`; run them in order. "
        f"The programs are in `{bin_dir}` (the environment flonnx is installed in).", "",
        "## 1. Start the SuperLink (coordinator; TLS, node authentication, persistent state)", "",
        "```sh", sh(c["superlink"]), "```", "",
        "## 2. Tell the `flwr` command where the SuperLink is", "",
        "```sh", f"cat {shlex.quote(str(consortium.folder / 'flwr-config.toml'))} "
                 '>> "${FLWR_HOME:-$HOME/.flwr}/config.toml"', "```", "",
        "## 3. Register each node's public key (coordinator)", "", "```sh",
        *(sh(cmd) for cmd in c["register"].values()), "```", "",
        "## 4. Start each SuperNode (at each site, with its own key, CA certificate and data)", "",
        "Each site receives `ca.crt` and keeps its private key; the data file and label column are the",
        "site's own (edit `data=` and `label=` in `--node-config`).", "",
        "```sh", *(sh(cmd) for cmd in c["supernode"].values()), "```", "",
        "## 5. Run the federation (coordinator)", "",
        f"The spec is `{spec}` and the registry `{registry}` (defaults of the app's run config;",
        "override with `--run-config \"spec='…' registry='…'\"`).", "",
        "```sh", sh(c["run"]), "```", "",
        "## 6. See the consortium", "", "```sh", sh(c["nodes"]),
        f"flonnx nodes --registry {shlex.quote(registry)}",
        f"flonnx lineage ls --registry {shlex.quote(registry)}", "```", "",
    ]
    return "\n".join(out)
