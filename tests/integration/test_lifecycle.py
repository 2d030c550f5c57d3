"""The daemon's life: refusing to start, reload on SIGHUP, clean SIGTERM, restart with state."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .haredis_procs import HaredisCluster, wait_until
from .redis_procs import RedisProc


def run_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haredis", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_check_config_accepts_the_shipped_example_shape(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x" * 32)
    conf = tmp_path / "h.toml"
    conf.write_text(
        f"""
[watcher]
name = "w1"
peers = ["127.0.0.1:26380"]
data_dir = "{tmp_path / "data"}"
secret_file = "secret"
[[primaries]]
name = "mymaster"
address = "127.0.0.1:6379"
quorum = 2
"""
    )
    result = run_cli("check-config", str(conf))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "primary mymaster at 127.0.0.1:6379 quorum=2" in result.stdout


def test_a_bad_config_names_the_key_and_the_daemon_refuses_to_start(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(
        f"""
[watcher]
name = "w1"
data_dir = "{tmp_path}"
[[primaries]]
name = "mymaster"
address = "127.0.0.1:6379"
quorum = 5
"""
    )
    for command in (["check-config", str(conf)], ["run", "-c", str(conf)]):
        result = run_cli(*command)
        assert result.returncode == 3, (command, result.stdout, result.stderr)
        assert f"{conf}: primaries[0].quorum: expected an integer in 1..1" in result.stderr


def test_a_corrupt_state_file_stops_the_daemon_before_it_serves(
    tmp_path: Path, redis_proc: Callable[..., RedisProc]
) -> None:
    primary = redis_proc()
    cluster = HaredisCluster(primary.address, watchers=1, quorum=1, workdir=str(tmp_path))
    try:
        w = cluster.watchers[0]
        w.state_file.parent.mkdir(parents=True)
        w.state_file.write_text('{"version": 1, "primaries": {"mymaster": {"current_epoch": true}}}')
        w.start(wait=False)
        assert w.popen is not None
        assert w.popen.wait(20) == 5
        assert "state" in w.log_text() and "mymaster" in w.log_text()
    finally:
        cluster.close()


def test_sigterm_stops_cleanly_and_a_restart_resumes_from_the_persisted_state(
    tmp_path: Path, redis_proc: Callable[..., RedisProc]
) -> None:
    primary = redis_proc()
    cluster = HaredisCluster(primary.address, watchers=1, quorum=1, workdir=str(tmp_path))
    try:
        cluster.start()
        w = cluster.watchers[0]
        wait_until(lambda: w.master_addr() == primary.address, 10, "the watcher to answer")
        # Plant a state as if a failover had happened at epoch 7, then restart.
        assert w.terminate() == 0
        log = w.log_text()
        assert "stopping" in log
        state = json.loads(w.state_file.read_text())
        state["primaries"]["mymaster"].update(current_epoch=7, config_epoch=7)
        w.state_file.write_text(json.dumps(state))
        w.start()
        info = w.master_info()
        assert info["config-epoch"] == "7"
        assert w.terminate() == 0
        assert json.loads(w.state_file.read_text())["primaries"]["mymaster"]["config_epoch"] == 7
    finally:
        cluster.close()


def test_sighup_applies_a_new_config_and_keeps_the_old_one_when_broken(
    tmp_path: Path, redis_proc: Callable[..., RedisProc]
) -> None:
    primary = redis_proc()
    cluster = HaredisCluster(primary.address, watchers=1, quorum=1, workdir=str(tmp_path))
    try:
        cluster.start()
        w = cluster.watchers[0]
        assert w.master_info()["down-after-milliseconds"] == "1000"
        assert w.popen is not None
        original = w.config_path.read_text()
        w.config_path.write_text(original.replace("down_after_ms = 1000", "down_after_ms = 4000"))
        w.popen.send_signal(signal.SIGHUP)
        wait_until(lambda: w.master_info()["down-after-milliseconds"] == "4000", 10, "the reload to apply")
        # A broken file is rejected; the running config (4000) stays and the daemon keeps serving.
        w.config_path.write_text(original.replace("quorum = 1", "quorum = 9"))
        w.popen.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload rejected" in w.log_text(), 10, "the rejection to be logged")
        assert w.master_info()["down-after-milliseconds"] == "4000"
        assert "primaries[0].quorum" in w.log_text()
        assert w.popen.poll() is None
    finally:
        cluster.close()


def test_a_failover_runs_the_configured_reconfig_script_with_sentinels_arguments(
    tmp_path: Path, redis_cluster: Callable[..., object]
) -> None:
    from .redis_procs import RedisCluster

    redis = redis_cluster(replicas=1)
    assert isinstance(redis, RedisCluster)
    out = tmp_path / "calls.txt"
    script = tmp_path / "reconfig.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> {out}\n')
    script.chmod(0o755)
    cluster = HaredisCluster(
        redis.primary.address,
        watchers=3,
        workdir=str(tmp_path),
        extra_primary="",
        extra_watcher="",
    )
    for w in cluster.watchers:
        w.config_path.write_text(
            w.config_path.read_text() + f'\n[hooks]\nclient_reconfig_script = "{script}"\n'
        )
    try:
        cluster.start()
        cluster.wait_agree(redis.primary.address)
        redis.primary.kill()
        new = redis.replicas[0].address
        wait_until(
            lambda: out.exists() and len(out.read_text().splitlines()) >= 3, 15, "the reconfig scripts"
        )
        lines = sorted(out.read_text().splitlines())
        old = redis.primary.address
        expected = f"mymaster {{}} start {old.host} {old.port} {new.host} {new.port}"
        assert lines == sorted([expected.format("leader")] + [expected.format("observer")] * 2)
    finally:
        cluster.close()


def _make_certs(directory: Path) -> tuple[Path, Path, Path]:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=haredis test CA",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=watcher", "-keyout", "w.key", "-out", "w.csr"
    )
    openssl("x509", "-req", "-in", "w.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "w.crt")  # fmt: skip
    return directory / "ca.crt", directory / "w.crt", directory / "w.key"


def test_tls_and_a_client_password_on_the_watcher_port_for_clients_cli_and_peers(
    tmp_path: Path, redis_cluster: Callable[..., object]
) -> None:
    import shutil

    import pytest
    import redis as redis_py

    from .redis_procs import RedisCluster

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make certificates")
    ca, cert, key = _make_certs(tmp_path)
    (tmp_path / "client.pass").write_text("client-secret\n")
    redis = redis_cluster(replicas=1)
    assert isinstance(redis, RedisCluster)
    tls_keys = (
        f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\ntls_ca_file = "{ca}"\n'
        f'client_password_file = "{tmp_path / "client.pass"}"\n'
    )
    cluster = HaredisCluster(redis.primary.address, workdir=str(tmp_path), extra_watcher=tls_keys)
    # The harness probes readiness over plain TCP; wait on the TLS port ourselves instead.
    try:
        for w in cluster.watchers:
            w.start(wait=False)

        def tls_client(port: int) -> redis_py.Redis:
            return redis_py.Redis(
                "127.0.0.1", port, ssl=True, ssl_ca_certs=str(ca), ssl_check_hostname=False,
                password="client-secret", socket_timeout=1.0, decode_responses=True, protocol=2,
            )  # fmt: skip

        def agreed(address: object) -> bool:
            replies = []
            for w in cluster.watchers:
                with tls_client(w.port) as c:
                    replies.append(c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"))
            return all(r == [address.host, str(address.port)] for r in replies)  # type: ignore[attr-defined]

        wait_until(lambda: agreed(redis.primary.address), 20, "the watchers over TLS")
        # Plain TCP is refused (the handshake fails), and so is TLS without the password.
        plain = redis_py.Redis("127.0.0.1", cluster.watchers[0].port, socket_timeout=1.0)
        with pytest.raises(redis_py.ConnectionError), plain:
            plain.ping()
        with pytest.raises(redis_py.AuthenticationError), redis_py.Redis(
            "127.0.0.1", cluster.watchers[0].port, ssl=True, ssl_ca_certs=str(ca), ssl_check_hostname=False,
            socket_timeout=1.0,
        ) as nopass:  # fmt: skip
            nopass.execute_command("SENTINEL", "MASTERS")
        # The CLI reads the TLS settings and the password from the config file.
        result = run_cli("status", "--json", "-c", str(cluster.watchers[0].config_path))
        assert result.returncode == 0, result.stderr
        # Peers talk over TLS with the password: a failover still needs (and gets) their votes.
        redis.primary.kill()
        new = redis.replicas[0].address
        wait_until(lambda: agreed(new), 20, "a failover agreed over TLS")
    finally:
        cluster.close()
