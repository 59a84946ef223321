"""`flonnx deploy init` / `keygen`: certificates, node keys, the app shim and the commands, checked
with the libraries Flower itself uses to read them (no server is started here; tests/deployment/ runs
the commands)."""

from __future__ import annotations

import io
import json
import stat
import tomllib
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from typer.testing import CliRunner

from flonnx.cli import app
from flonnx.server.deploy import DeployError, init_consortium, write_node_keys

ROOT = Path(__file__).resolve().parents[2]
NODES = ["hospital-a", "hospital-b", "hospital-c"]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("c") / "consortium"
    return init_consortium(folder, hosts=["127.0.0.1", "localhost", "link.example.org"], nodes=NODES,
                           frameworks=["torch", "jax", "sklearn"], listen="127.0.0.1", port=18000,
                           node_port_base=19000)


def test_the_superlink_certificate_is_signed_by_the_ca_for_every_host(consortium) -> None:  # type: ignore[no-untyped-def]
    folder = consortium.folder
    ca = x509.load_pem_x509_certificate((folder / "ca/ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((folder / "superlink/server.crt").read_bytes())

    server.verify_directly_issued_by(ca)  # raises if the signature or issuer is wrong
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "link.example.org"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_node_keys_are_what_flower_reads_and_private_files_are_private(consortium) -> None:  # type: ignore[no-untyped-def]
    folder = consortium.folder
    for name in NODES:
        private = load_ssh_private_key((folder / f"nodes/{name}/{name}.key").read_bytes(), password=None)
        public = load_ssh_public_key((folder / f"nodes/{name}/{name}.pub").read_bytes())
        assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1)
        assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]
        assert stat.S_IMODE((folder / f"nodes/{name}/{name}.key").stat().st_mode) == 0o600
        assert (folder / f"nodes/{name}/ca.crt").read_bytes() == (folder / "ca/ca.crt").read_bytes()
    for secret in ("ca/ca.key", "superlink/server.key"):
        assert stat.S_IMODE((folder / secret).stat().st_mode) == 0o600
    keys = {(folder / f"nodes/{n}/{n}.pub").read_text() for n in NODES}
    assert len(keys) == len(NODES)


def test_the_commands_name_the_files_ports_and_node_config_of_each_node(consortium) -> None:  # type: ignore[no-untyped-def]
    folder = consortium.folder
    doc = json.loads((folder / "consortium.json").read_text())
    link = doc["commands"]["superlink"]

    assert link[0] == "flower-superlink"
    for flag, value in (("--ssl-ca-certfile", "ca/ca.crt"), ("--ssl-certfile", "superlink/server.crt"),
                        ("--ssl-keyfile", "superlink/server.key"), ("--database", "superlink/state.db")):
        assert link[link.index(flag) + 1] == str(folder / value)
    assert "--enable-supernode-auth" in link and "--insecure" not in link
    assert link[link.index("--host") + 1 :][:3] == ["127.0.0.1", "--port", "18000"]
    ports = []
    for i, name in enumerate(NODES):
        node = doc["commands"]["supernode"][name]
        assert node[node.index("--superlink") + 1] == "127.0.0.1:18000"
        assert node[node.index("--root-certificates") + 1] == str(folder / f"nodes/{name}/ca.crt")
        key = node[node.index("--auth-supernode-private-key") + 1]
        assert key == str(folder / f"nodes/{name}/{name}.key")
        config = tomllib.loads("\n".join(node[node.index("--node-config") + 1].split(" ")))
        assert config == {"client-id": name, "framework": ["torch", "jax", "sklearn"][i],
                          "data": str(folder / "data" / f"{name}.csv"), "label": "label"}
        ports.append(int(node[node.index("--port") + 1]))
        assert doc["commands"]["register"][name] == ["flwr", "supernode", "register",
                                                     str(folder / f"nodes/{name}/{name}.pub"), "flonnx"]
    assert ports == [19000, 19001, 19002]
    assert tomllib.loads((folder / "flwr-config.toml").read_text())["superlink"]["flonnx"] == {
        "address": "127.0.0.1:18000", "root-certificates": str(folder / "ca/ca.crt")}
    commands_md = (folder / "COMMANDS.md").read_text()
    assert all(f"--node-config 'client-id=\"{n}\"" in commands_md for n in NODES)


def test_the_app_bundle_is_a_shim_with_every_run_config_key(consortium) -> None:  # type: ignore[no-untyped-def]
    from flwr.cli.build import build_fab_from_disk

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    fab = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(consortium.folder / "app")))
    shim = tomllib.loads(fab.read("pyproject.toml").decode())["tool"]["flwr"]["app"]

    assert [n for n in fab.namelist() if n.endswith(".py")] == []
    assert shim["components"] == declared["components"]
    assert set(shim["config"]) == set(declared["config"])
    assert shim["config"]["spec"] == str(consortium.folder / "federation.toml")
    assert shim["config"]["registry"] == str(consortium.folder / "registry")
    assert (consortium.folder / "federation.toml").is_file()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hosts": ["127.0.0.1", "bad host!"]}, "--hosts: 'bad host!' is neither an IP address nor a DNS name"),
    ({"hosts": []}, "--hosts: give at least one host"),
    ({"nodes": ["a", "a"]}, "--nodes: every node needs its own name"),
    ({"nodes": ["../x"]}, "--nodes: '../x' is not a valid node name"),
    ({"nodes": ["a", "b"], "frameworks": ["torch", "jax", "sklearn"]},
     "--frameworks: give one framework for all nodes or one per node (2), not 3"),
    ({"frameworks": ["tensorflow"]}, "--frameworks: 'tensorflow' is not one of"),
    ({"port": 0}, "--port: 0 is not a usable TCP port"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path: Path, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    args = {"hosts": ["127.0.0.1"], "nodes": ["a"], **kwargs}
    with pytest.raises(DeployError) as info:
        init_consortium(tmp_path / "c", **args)
    assert str(info.value).startswith(message), str(info.value)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_an_existing_consortium_or_key_is_never_overwritten(consortium, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = (consortium.folder / "ca/ca.key").read_bytes()
    with pytest.raises(DeployError, match="exists and is not an empty folder"):
        init_consortium(consortium.folder, hosts=["127.0.0.1"], nodes=["x"])
    assert (consortium.folder / "ca/ca.key").read_bytes() == before

    write_node_keys("site", tmp_path)
    key = (tmp_path / "site.key").read_bytes()
    with pytest.raises(DeployError, match="keys are never overwritten"):
        write_node_keys("site", tmp_path)
    assert (tmp_path / "site.key").read_bytes() == key


def test_the_cli_writes_a_consortium_and_a_site_key(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["deploy", "init", str(tmp_path / "c"), "--hosts", "127.0.0.1,localhost",
                                 "--nodes", "hospital-a,hospital-b", "--frameworks", "torch,sklearn"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "COMMANDS.md").is_file() and "keys of 2 nodes" in result.output

    again = runner.invoke(app, ["deploy", "init", str(tmp_path / "c"), "--hosts", "127.0.0.1",
                                "--nodes", "x"])
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert "exists and is not an empty folder" in again.output

    site = runner.invoke(app, ["deploy", "keygen", "hospital-d", "-o", str(tmp_path / "site")])
    assert site.exit_code == 0, site.output
    assert (tmp_path / "site" / "hospital-d.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
