"""The configuration file: documented example, precedence, and one line per mistake."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vifwire.cli.config import KEYS, ConfigError, read_config
from vifwire.settings import KeystoneCredentials, Settings

from .conftest import cli_env, run_cli

EXAMPLE = Path(__file__).parents[2] / "deploy" / "vifwire.conf.example"


def _uncommented(tmp_path: Path) -> Path:
    """The example with every documented key set to its shown value."""
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        if re.fullmatch(r"#[a-z_]+ =.*", line):
            line = line[1:]
        lines.append(line)
    path = tmp_path / "vifwire.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_example_documents_every_key_and_parses(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    for section, key in KEYS:
        if key != "transport_url":
            assert f"#{key} =" in text, key
        assert f"[{section}]" in text, section
    values = read_config(_uncommented(tmp_path))
    settings = Settings(**values)
    assert settings.api_port == 9696 and settings.api_host == "127.0.0.1"
    assert settings.vxlan_vni_range == (1, 16_000_000)
    assert (settings.physical_network, settings.vlan_range) == ("physnet1", (1, 4094))
    assert settings.agent_down_time_s == 75.0 and settings.nova_url.endswith("/v2.1")
    assert (settings.sg_members_delay_s, settings.sg_members_max_delay_s) == (0.05, 1.0)


@pytest.mark.parametrize(("body", "why"), [
    ("[DEFAULT]\nbind_prot = 9696\n", "[DEFAULT] bind_prot = '9696': unknown key"),
    ("[api]\nbind_port = 9696\n", "[api] bind_port = '9696': unknown key"),
    ("[DEFAULT]\nbind_port = 70000\n", "[DEFAULT] bind_port = '70000': must be 1-65535"),
    ("[DEFAULT]\nbind_port = many\n", "[DEFAULT] bind_port = 'many': invalid literal"),
    ("[ml2_type_vxlan]\nvni_ranges = 10:1\n", "[ml2_type_vxlan] vni_ranges = '10:1': want"),
    ("[ml2_type_vlan]\nnetwork_vlan_ranges = 1:2\n",
     "[ml2_type_vlan] network_vlan_ranges = '1:2': want"),
])
def test_a_mistake_names_file_key_and_value(tmp_path: Path, body: str, why: str) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(body)
    with pytest.raises(ConfigError) as raised:
        read_config(path)
    assert str(raised.value).startswith(f"{path}: {why}"), raised.value
    done = run_cli("--config-file", str(path), "status", run_dir=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: {raised.value}"], done.stderr


def test_a_named_file_must_exist_and_be_ini(tmp_path: Path) -> None:
    done = run_cli("--config-file", str(tmp_path / "nope.conf"), "status", run_dir=tmp_path)
    assert done.returncode == 1
    assert "cannot read configuration file" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "junk.conf").write_text("bind_port = 1\n")
    done = run_cli("--config-file", str(tmp_path / "junk.conf"), "status", run_dir=tmp_path)
    assert done.returncode == 1 and "is not INI" in done.stderr, done.stderr


def test_flags_beat_environment_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "vifwire.conf"
    path.write_text("[DEFAULT]\nhost = from-file\nbind_port = 1111\n")
    from_file = run_cli("status", run_dir=tmp_path, VIFWIRE_CONFIG_FILE=str(path))
    assert "127.0.0.1:1111" in from_file.stdout and "host from-file" in from_file.stdout
    from_env = run_cli("status", run_dir=tmp_path, VIFWIRE_CONFIG_FILE=str(path),
                       VIFWIRE_API_PORT="2222")
    assert "127.0.0.1:2222" in from_env.stdout and "host from-file" in from_env.stdout
    from_flag = run_cli("--config-file", str(path), "--api-port", "3333", "--host", "flagged",
                        "status", run_dir=tmp_path, VIFWIRE_API_PORT="2222")
    assert "127.0.0.1:3333" in from_flag.stdout and "host flagged" in from_flag.stdout


def test_importing_settings_reads_no_environment(tmp_path: Path) -> None:
    code = "from vifwire.settings import Settings; print(Settings().run_dir)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cli_env(tmp_path / "elsewhere"), check=True)
    assert done.stdout.strip() == "/var/run/vifwire"


def test_authentication_keys(tmp_path: Path) -> None:
    path = tmp_path / "auth.conf"
    path.write_text("[DEFAULT]\nauth_strategy = keystone\nbind_host = 0.0.0.0\n"
                    "allowed_hosts = Neutron.lan, proxy\n"
                    "[keystone_authtoken]\nauth_type = password\nauth_url = http://ks:5000/v3\n"
                    "username = neutron\npassword = pw\nproject_name = services\n"
                    "token_cache_time = 60\n"
                    "[oslo_policy]\npolicy_file = /etc/vifwire/policy.yaml\n"
                    "[nova]\nauth_url = http://ks:5000/v3\nusername = nova\npassword = npw\n"
                    "user_domain_name = D\n")
    settings = Settings(**read_config(path))
    assert settings.auth_strategy == "keystone"
    assert settings.api_allowed_hosts == ("neutron.lan", "proxy")
    assert settings.keystone_authtoken == KeystoneCredentials(
        "http://ks:5000/v3", "neutron", "pw", project_name="services")
    assert settings.token_cache_time_s == 60.0
    assert settings.policy_file == Path("/etc/vifwire/policy.yaml")
    assert settings.nova_auth == KeystoneCredentials("http://ks:5000/v3", "nova", "npw",
                                                     user_domain_name="D")


@pytest.mark.parametrize(("body", "why"), [
    ("[DEFAULT]\nauth_strategy = none\n", "[DEFAULT] auth_strategy = 'none': must be one of"),
    ("[keystone_authtoken]\nusername = u\n", "[keystone_authtoken] needs auth_url, password"),
    ("[nova]\nauth_url = http://ks/v3\npassword = p\n", "[nova] needs username"),
])
def test_an_authentication_mistake_is_one_line(tmp_path: Path, body: str, why: str) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(body)
    with pytest.raises(ConfigError, match=re.escape(why)):
        read_config(path)


def test_security_group_round_delays(tmp_path: Path) -> None:
    path = tmp_path / "vifwire.conf"
    path.write_text("[securitygroup]\nmembers_delay = 0.2\nmembers_max_delay = 2\n"
                    "members_read_interval = 3\n")
    settings = Settings(**read_config(path))
    assert (settings.sg_members_delay_s, settings.sg_members_max_delay_s) == (0.2, 2.0)
    assert settings.sg_members_read_interval_s == 3.0
