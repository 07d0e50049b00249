"""Security and cache overheads, each option off and on in the same run.

``security``: four nodes of the same build, started by this workload and loaded with the
same data — plain, API keys (ADBC Basic handshake -> bearer token), TLS (grpc+tls with a
throw-away CA), and both. Small-query latency (``SELECT count(*)`` of a small table, warm
ADBC connection) and export throughput (``SELECT *`` of a narrow table through ADBC
``fetch_arrow_table``) are measured on all four, interleaved (the order rotates each
repeat). Named results: each option's p50 latency and export rows/s relative to the plain
node (target: at most 10% worse).

``cache``: a node with the result cache on; a repeated GROUP BY over the narrow table. The
first run computes it (miss); the repeats are answered from the cache. In-node time is the
node's own ``x-miniodb-duration-ms`` statistic of each hit (GetFlightInfo response header);
end to end is ADBC ``execute`` + ``fetch_arrow_table`` on a warm connection.
"""

from __future__ import annotations

import secrets
import statistics
import time
from pathlib import Path

import pyarrow.flight as flight

from clients.flight import Client

from .. import data
from ..metrics import HIGHER, LOWER, Measurement, define
from ..runner import Bench
from ..services import Service, node_service
from .latency import timed_calls

define("auth_small_query_p50_vs_off", "x", LOWER,
       "p50 SELECT count(*) small table, ADBC: API keys on (Basic -> bearer token) / off", 1.10, "observability #7")
define("tls_small_query_p50_vs_off", "x", LOWER,
       "p50 SELECT count(*) small table, ADBC: grpc+tls / plaintext", 1.10, "observability #7")
define("auth_tls_small_query_p50_vs_off", "x", LOWER, "p50 small query: API keys + TLS / neither")
define("auth_export_vs_off", "x", HIGHER, "ADBC SELECT * rows/s: API keys on / off", 1 / 1.10, "observability #7")
define("tls_export_vs_off", "x", HIGHER, "ADBC SELECT * rows/s: grpc+tls / plaintext", 1 / 1.10, "observability #7")
define("auth_tls_export_vs_off", "x", HIGHER, "ADBC SELECT * rows/s: API keys + TLS / neither")
define("raw_flight_tls_export_vs_off", "x", HIGHER,
       "reference: raw pyarrow.flight DoGet rows/s of the same table, grpc+tls / plaintext (gRPC's own TLS cost)")
define("cache_hit_in_node_p50_ms", "ms", LOWER,
       "p50 of a repeated GROUP BY answered from the result cache, in the node (x-miniodb-duration-ms)", 3.0,
       "observability #7")
define("cache_hit_adbc_p50_ms", "ms", LOWER, "the same cache hit end to end: ADBC execute + fetch, warm connection")
define("cache_hit_speedup", "x", HIGHER, "first (computed) run / ADBC p50 of the cached repeats")

SMALL_ROWS = 1000
EXPORT_ROWS_MAX = 1_000_000
WARMUP = 20
VARIANTS = (  # key, label, auth, tls
    ("off", "plaintext, no auth", False, False),
    ("auth", "API keys (Basic -> token)", True, False),
    ("tls", "grpc+tls", False, True),
    ("auth_tls", "API keys + grpc+tls", True, True),
)


def _certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 (needs ``cryptography``)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("bench CA")).issuer_name(name("bench CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class _Variant:
    def __init__(self, key: str, label: str, svc: Service, api_key: str | None, ca: bytes | None):
        self.key, self.label, self.svc, self.api_key, self.ca = key, label, svc, api_key, ca
        self.uri = svc.ready["flight"]
        self.conn = None

    def client(self) -> Client:
        return Client(self.uri, token=self.api_key, tls_root_certs=self.ca)

    def adbc(self):
        if self.conn is None:
            import adbc_driver_flightsql.dbapi as dbapi
            from adbc_driver_flightsql import DatabaseOptions

            kwargs: dict[str, str] = {}
            if self.api_key:
                kwargs.update(username="bench", password=self.api_key)
            if self.ca:
                kwargs[DatabaseOptions.TLS_ROOT_CERTS.value] = self.ca.decode()
            self.conn = dbapi.connect(self.uri, db_kwargs=kwargs, autocommit=True)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.svc.stop()


def _export(conn, sql: str) -> tuple[float, int]:
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetch_arrow_table().num_rows
    return time.perf_counter() - started, rows


def run(b: Bench) -> None:
    """API keys and TLS off/on: small-query latency and export throughput, interleaved."""
    rows = min(b.opts.rows, EXPORT_ROWS_MAX)
    api_key = secrets.token_urlsafe(24)
    root = b.workdir / "security"
    ca_file, cert_file, key_file = _certs(root / "tls")
    ca = ca_file.read_bytes()
    narrow = data.narrow_table(rows, seed=b.opts.seed)
    narrow_bytes = narrow.nbytes
    small = data.narrow_table(SMALL_ROWS, seed=b.opts.seed + 1)
    variants: list[_Variant] = []
    raw: dict[str, tuple[Service, flight.FlightClient]] = {}
    try:
        for key, extra in (("raw_plain", []), ("raw_tls", ["--tls-cert-file", str(cert_file),
                                                           "--tls-key-file", str(key_file)])):
            svc = Service(key, ["-m", "bench.baselines.tls_flight", *extra], root / key)
            svc.start()
            fc = flight.FlightClient(svc.ready["uri"], tls_root_certs=ca if key == "raw_tls" else None)
            raw[key] = (svc, fc)
            writer, _ = fc.do_put(flight.FlightDescriptor.for_path("sec_narrow"), narrow.schema)
            writer.write_table(narrow)
            writer.close()
        for key, label, with_auth, with_tls in VARIANTS:
            env = {"MINIODB_QUERY_CACHE_ENABLED": "false"}
            if with_auth:
                env.update(MINIODB_SERVER_AUTH_ENABLED="true", MINIODB_SERVER_API_KEYS=api_key)
            if with_tls:
                env.update(MINIODB_SERVER_TLS_ENABLED="true", MINIODB_SERVER_TLS_CERT_FILE=str(cert_file),
                           MINIODB_SERVER_TLS_KEY_FILE=str(key_file))
            svc = node_service(root / key / "data", env=env)
            b.log(f"security: starting node '{key}' ({label})")
            svc.start()
            v = _Variant(key, label, svc, api_key if with_auth else None, ca if with_tls else None)
            variants.append(v)
            with v.client() as c:
                c.ingest("sec_small", small, mode="replace")
                c.ingest("sec_narrow", narrow, mode="replace")
                c.flush()
        del narrow
        n, repeat = b.opts.latency_queries, b.opts.repeat
        small_sql, export_sql = "SELECT count(*) FROM sec_small", "SELECT * FROM sec_narrow"
        lat = {v.key: b.results.add(Measurement("security_latency", "small query latency, auth/TLS off vs on",
                                                "miniodb" if v.key == "off" else v.key, f"MinIODB · {v.label}"))
               for v in variants}
        exp = {v.key: b.results.add(Measurement("security_export", "export narrow table, auth/TLS off vs on",
                                                "miniodb" if v.key == "off" else v.key, f"MinIODB · {v.label}",
                                                rows, narrow_bytes))
               for v in variants}
        raw_m = {k: b.results.add(Measurement("security_export", "export narrow table, auth/TLS off vs on", k,
                                              f"raw pyarrow.flight DoGet · {'grpc+tls' if k == 'raw_tls' else 'plaintext'}",
                                              rows, narrow_bytes)) for k in raw}

        def raw_get(k: str) -> float:
            started = time.perf_counter()
            raw[k][1].do_get(flight.Ticket(b"sec_narrow")).read_all()
            return time.perf_counter() - started

        for v in variants:  # warm-up: connections, handshakes, file cache
            timed_calls(v.adbc(), small_sql, WARMUP)
            _export(v.adbc(), export_sql)
        for k in raw:
            raw_get(k)
        with b.task("auth/TLS off vs on", repeat * len(variants) * (n + 1), "calls") as task:
            for i in range(repeat):
                order = variants[i % len(variants):] + variants[:i % len(variants)]
                for v in order:
                    samples = timed_calls(v.adbc(), small_sql, n)
                    lat[v.key].latencies.append(samples)
                    lat[v.key].seconds.append(sum(samples))
                    task.advance(n)
                for v in reversed(order):
                    seconds, got = _export(v.adbc(), export_sql)
                    exp[v.key].seconds.append(seconds)
                    if got != rows:
                        b.note(f"security: node '{v.key}' exported {got} rows, expected {rows}")
                    task.advance()
                for k in (sorted(raw) if i % 2 == 0 else sorted(raw, reverse=True)):
                    raw_m[k].seconds.append(raw_get(k))
    finally:
        for v in variants:
            v.close()
        for svc, fc in raw.values():
            fc.close()
            svc.stop()
    for m in (*lat.values(), *exp.values(), *raw_m.values()):
        b.report(m)
    b.results.ratio("raw_flight_tls_export_vs_off", raw_m["raw_tls"].rows_per_s, raw_m["raw_plain"].rows_per_s)
    off_lat, off_exp = lat["off"].latency(50), exp["off"].rows_per_s
    for key in ("auth", "tls", "auth_tls"):
        b.results.ratio(f"{key}_small_query_p50_vs_off", lat[key].latency(50), off_lat, reference=lat["off"].label)
        b.results.ratio(f"{key}_export_vs_off", exp[key].rows_per_s, off_exp, reference=exp["off"].label)


def run_cache(b: Bench) -> None:
    """A repeated GROUP BY answered from the result cache: in-node and ADBC end-to-end p50."""
    import adbc_driver_flightsql.dbapi as dbapi

    rows = min(b.opts.rows, EXPORT_ROWS_MAX)
    svc = node_service(b.workdir / "cache" / "data", env={"MINIODB_QUERY_CACHE_ENABLED": "true"})
    b.log("cache: starting a node with the result cache on")
    svc.start()
    sql = "SELECT k, sum(a), avg(b), count(*) FROM sec_cache GROUP BY k ORDER BY k"
    n, repeat = b.opts.latency_queries, b.opts.repeat
    try:
        with Client(svc.ready["flight"]) as c:
            c.ingest("sec_cache", data.narrow_table(rows, seed=b.opts.seed), mode="replace")
            c.flush()
            started = time.perf_counter()
            first = c.query(sql)
            cold = time.perf_counter() - started
            if c.last_stats().get("cache-hit") != "false":
                b.note("cache: the first run was not a miss")
            in_node = b.results.add(Measurement("cache_hit", "repeated GROUP BY from the result cache",
                                                "miniodb", "MinIODB · cache hit, in the node"))
            e2e = b.results.add(Measurement("cache_hit", "repeated GROUP BY from the result cache",
                                            "adbc", "MinIODB · cache hit, ADBC end to end"))
            computed = b.results.add(Measurement("cache_hit", "repeated GROUP BY from the result cache",
                                                 "computed", "MinIODB · first run (computed)", first.num_rows))
            computed.seconds.append(cold)
            conn = dbapi.connect(svc.ready["flight"], autocommit=True)
            try:
                timed_calls(conn, sql, WARMUP)
                with b.task("cache hits", repeat * 2 * n, "queries") as task:
                    for _ in range(repeat):
                        hits = []
                        for _ in range(n):
                            c.query(sql)
                            st = c.last_stats()
                            if st.get("cache-hit") != "true":
                                b.note("cache: a repeat was not a cache hit")
                            hits.append(float(st["duration-ms"]) / 1000.0)
                            task.advance()
                        in_node.latencies.append(hits)
                        in_node.seconds.append(sum(hits))
                        samples = timed_calls(conn, sql, n)
                        e2e.latencies.append(samples)
                        e2e.seconds.append(sum(samples))
                        task.advance(n)
            finally:
                conn.close()
    finally:
        svc.stop()
    for m in (in_node, e2e, computed):
        b.report(m)
    b.results.set("cache_hit_in_node_p50_ms", in_node.latency(50) * 1000)
    b.results.set("cache_hit_adbc_p50_ms", e2e.latency(50) * 1000)
    b.results.ratio("cache_hit_speedup", cold, e2e.latency(50))
    b.note(f"cache: first run {cold * 1000:,.1f} ms; in-node hit p50 {in_node.latency(50) * 1000:.3f} ms "
           f"(median of {statistics.median(len(x) for x in in_node.latencies)} hits per repeat)")


__all__ = ["run", "run_cache"]
