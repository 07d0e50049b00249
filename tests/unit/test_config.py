import pytest

from flight_server.config import ConfigError, env_name, leaf_paths, load_settings


def test_defaults_are_embedded():
    s = load_settings(environ={})
    assert s.server.grpc_port == 8080 and s.server.rest_port == 8081 and s.server.metrics_port == 9090
    assert s.object_store_url.startswith("file://")
    assert s.metadata_url.startswith("sqlite://")


def test_precedence_defaults_yaml_env_cli(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  grpc_port: 7000\n  rest_port: 7001\nbuffer:\n  size: 500\n")
    env = {"MINIODB_SERVER_REST_PORT": "7101", "MINIODB_BUFFER_SIZE": "600"}
    s = load_settings(cfg, {"buffer.size": 700, "server.node_id": None}, environ=env)
    assert s.server.grpc_port == 7000  # yaml over default
    assert s.server.rest_port == 7101  # env over yaml
    assert s.buffer.size == 700  # cli over env
    assert s.server.node_id == ""  # a flag not given overrides nothing


def test_env_names_follow_design():
    names = {env_name(p) for p in leaf_paths()}
    for expected in ("MINIODB_SERVER_NODE_ID", "MINIODB_SERVER_GRPC_PORT", "MINIODB_REDIS_SENTINEL_ENABLED",
                     "MINIODB_REDIS_SENTINEL_MASTER_NAME", "MINIODB_REDIS_SENTINEL_ADDRS",
                     "MINIODB_STORAGE_MINIO_ENDPOINT", "MINIODB_STORAGE_MINIO_USE_SSL",
                     "MINIODB_COORDINATOR_ENABLED", "MINIODB_COORDINATOR_MODE", "MINIODB_QUERY_CACHE_ENABLED",
                     "MINIODB_QUERY_CACHE_DISTRIBUTED", "MINIODB_BUFFER_SIZE", "MINIODB_BUFFER_FLUSH_INTERVAL",
                     "MINIODB_METADATA_BACKUP_ENABLED", "MINIODB_METADATA_BACKUP_INTERVAL"):
        assert expected in names


def test_sentinel_adders_alias_and_lists():
    s = load_settings(environ={"MINIODB_REDIS_SENTINEL_ENABLED": "true",
                               "MINIODB_REDIS_SENTINEL_ADDERS": "a:26379, b:26379"})
    assert s.redis.sentinel.addrs == ("a:26379", "b:26379")
    assert s.metadata_url.startswith("redis+sentinel://a:26379,b:26379/mymaster")


def test_unknown_yaml_key_names_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  grpc_prot: 1\n")
    with pytest.raises(ConfigError, match="server.grpc_prot"):
        load_settings(cfg, environ={})


def test_unknown_section_names_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("servr:\n  grpc_port: 1\n")
    with pytest.raises(ConfigError, match="servr"):
        load_settings(cfg, environ={})


@pytest.mark.parametrize("env,key", [
    ({"MINIODB_SERVER_GRPC_PORT": "eighty"}, "MINIODB_SERVER_GRPC_PORT"),
    ({"MINIODB_BUFFER_SIZE": "-5"}, "buffer.size"),
    ({"MINIODB_SERVER_AUTH_ENABLED": "maybe"}, "MINIODB_SERVER_AUTH_ENABLED"),
    ({"MINIODB_SERVER_GRPC_PORT": "70000"}, "server.grpc_port"),
    ({"MINIODB_WAL_SYNC": "sometimes"}, "wal.sync"),
    ({"MINIODB_WAL_MIRROR": "s3"}, "wal.mirror"),
])
def test_malformed_values_name_the_key(env, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(environ=env)


def test_malformed_yaml_value(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("buffer:\n  flush_interval: soon\n")
    with pytest.raises(ConfigError, match="buffer.flush_interval"):
        load_settings(cfg, environ={})


def test_durations_and_sizes():
    s = load_settings(environ={"MINIODB_BUFFER_FLUSH_INTERVAL": "2m", "MINIODB_BUFFER_MAX_BYTES": "64MiB"})
    assert s.buffer.flush_interval == 120.0
    assert s.buffer.max_bytes == 64 * 1024 * 1024


def test_buffer_spill_bound():
    assert load_settings(environ={}).buffer.max_spill_bytes == 8 * 1024**3
    assert load_settings(environ={"MINIODB_BUFFER_MAX_SPILL_BYTES": "0"}).buffer.max_spill_bytes == 0  # off
    assert load_settings(environ={"MINIODB_BUFFER_MAX_SPILL_BYTES": "2GiB"}).buffer.max_spill_bytes == 2 * 1024**3
    with pytest.raises(ConfigError, match=r"buffer\.max_spill_bytes"):
        load_settings(environ={"MINIODB_BUFFER_MAX_SPILL_BYTES": "-1"})
    with pytest.raises(ConfigError, match=r"buffer\.max_bytes"):
        load_settings(environ={"MINIODB_BUFFER_MAX_BYTES": "0"})


def test_settings_are_frozen():
    s = load_settings(environ={})
    with pytest.raises(AttributeError):
        s.server.grpc_port = 1  # type: ignore[misc]


def test_unknown_environment_variables_are_listed_with_the_closest_name():
    from flight_server.config import unknown_env, unknown_env_message

    env = {"MINIODB_BUFER_SIZE": "5", "MINIODB_SERVER_GRPC_PORT": "1", "MINIODB_REDIS_SENTINEL_ADDERS": "a:1",
           "MINIODB_PORT": "tcp://10.0.0.1:8080", "MINIODB_PORT_8080_TCP_ADDR": "10.0.0.1",
           "MINIODB_SERVICE_PORT": "8080", "MINIODB_TOKEN": "t", "MINIODB_TLS_ROOT_CERTS": "ca.pem",
           "MINIODB_ZZZ": "1", "OTHER_BUFER_SIZE": "1"}
    assert unknown_env(env) == [("MINIODB_BUFER_SIZE", "MINIODB_BUFFER_SIZE"), ("MINIODB_ZZZ", None)]
    msg = unknown_env_message(env)
    assert "\n" not in msg and "MINIODB_BUFER_SIZE (did you mean MINIODB_BUFFER_SIZE?)" in msg
    assert unknown_env_message({"MINIODB_WAL_SYNC": "none"}) is None


def test_secrets_from_files(tmp_path):
    """Docker/Kubernetes secrets: MINIODB_<SECTION>_<KEY>_FILE names a file holding the value."""
    (tmp_path / "access").write_text("AKIA-from-file\n")
    (tmp_path / "secret").write_text("s3cr3t with spaces \n")
    (tmp_path / "keys").write_text("key-one,key-two\nkey-three\n\n")
    (tmp_path / "redis").write_text("redis-pass")
    s = load_settings(environ={
        "MINIODB_STORAGE_MINIO_ACCESS_KEY_FILE": str(tmp_path / "access"),
        "MINIODB_STORAGE_MINIO_SECRET_KEY_FILE": str(tmp_path / "secret"),
        "MINIODB_SERVER_API_KEYS_FILE": str(tmp_path / "keys"),
        "MINIODB_REDIS_PASSWORD_FILE": str(tmp_path / "redis"),
        "MINIODB_SERVER_AUTH_ENABLED": "true"})
    assert s.storage.minio.access_key == "AKIA-from-file"
    assert s.storage.minio.secret_key == "s3cr3t with spaces "  # only the line break goes
    assert s.server.api_keys == ("key-one", "key-two", "key-three")
    assert s.redis.password == "redis-pass"


def test_secret_file_errors_name_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="MINIODB_REDIS_PASSWORD_FILE"):
        load_settings(environ={"MINIODB_REDIS_PASSWORD_FILE": str(tmp_path / "missing")})
    (tmp_path / "p").write_text("x")
    with pytest.raises(ConfigError, match="both MINIODB_REDIS_PASSWORD and MINIODB_REDIS_PASSWORD_FILE"):
        load_settings(environ={"MINIODB_REDIS_PASSWORD": "y", "MINIODB_REDIS_PASSWORD_FILE": str(tmp_path / "p")})


def test_file_variables_are_not_typos():
    from flight_server.config import unknown_env

    assert unknown_env({"MINIODB_SERVER_API_KEYS_FILE": "/run/secrets/k",
                        "MINIODB_SERVER_TLS_CERT_FILE": "/c.pem", "MINIODB_LB_GRPC_PORT": "8080",
                        "MINIODB_BACKEND_HOST": "tasks.miniodb"}) == []  # the last two: haproxy.cfg's
    assert [n for n, _ in unknown_env({"MINIODB_SERVER_API_KEY_FILE": "/k"})] == ["MINIODB_SERVER_API_KEY_FILE"]


def test_drain_settings():
    s = load_settings(environ={"MINIODB_SERVER_DRAIN_DELAY": "500ms"})
    assert s.server.drain_delay == 0.5 and s.server.drain_timeout == 30.0
    with pytest.raises(ConfigError, match="server.drain_timeout"):
        load_settings({}, {"server.drain_timeout": -1.0}, environ={})
