"""``miniodb bench``: measure MinIODB's main paths against baselines run side by side.

    miniodb bench all --rows 2000000 --report bench/RESULTS.md --plot bench/results.png \
        --json bench/results.json
    miniodb bench query --uri grpc://node:8080 --rows 500000

Without ``--uri`` the bench starts its own node (embedded storage in a temp folder) and stops
it afterwards. The bench reaches nodes only over the network (it imports ``clients`` only).
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import click
from click.core import ParameterSource

from clients import errors

CHOICES = ("all", "ingest", "query", "export", "rest", "latency", "memory", "security", "cache", "mirror", "tpch", "selective", "cluster")
MEMORY_DEFAULT = 50_000_000


def _positive_float(ctx, param, value):
    if value is not None and not value > 0:
        raise click.BadParameter("must be greater than 0")
    return value


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter("must be at least 1")
    return value


@click.command("bench")
@click.argument("workload", type=click.Choice(CHOICES), default="all")
@click.option("--uri", default=None,
              help="Flight URI of a running node (the bench creates and finally drops tables named bench_*); "
                   "default: start a node (embedded storage in a temp folder) and stop it afterwards")
@click.option("--rest-url", default=None, help="REST gateway base URL [default: the node's own REST address]")
@click.option("--username", envvar="MINIODB_USERNAME", default=None,
              help="with --uri, for an auth-enabled node")
@click.option("--password", envvar="MINIODB_PASSWORD", default=None, help="API key (Basic auth)")
@click.option("--rows", type=int, default=2_000_000, show_default=True, callback=_positive,
              help="rows of the narrow and wide tables")
@click.option("--repeat", type=int, default=3, show_default=True, callback=_positive,
              help="runs of every timed phase (medians are reported)")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="write a Markdown report here")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="write the bar chart here: .svg (plain text, no extra needed) or .png (matplotlib, "
                   "from miniodb[bench])")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="write JSON here")
@click.option("--rest-rows", type=int, default=200_000, show_default=True, callback=_positive,
              help="rows per REST ingest run (at most --rows)")
@click.option("--latency-queries", type=int, default=200, show_default=True, callback=_positive,
              help="queries per latency run and system")
@click.option("--memory-rows", type=int, default=None, callback=_positive,
              help=f"rows of the memory workload [default: {MEMORY_DEFAULT:,}; "
                   f"with 'all': min({MEMORY_DEFAULT:,}, 25 x --rows)]")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--scale", type=float, default=None, callback=_positive_float,
              help="TPC-H scale factor (tpchgen-cli; 1 = 6M lineitem rows) [default: 1 for tpch and all, "
                   "0.1 for cluster]")
@click.option("--keep-data", is_flag=True, help="keep the temp folder (node data, logs) and the bench tables")
def bench(workload, uri, rest_url, username, password, rows, repeat, report, plot, json_path, rest_rows,
          latency_queries, memory_rows, seed, scale, keep_data):
    """Benchmark WORKLOAD (ingest, query, export, rest, latency, memory, security, cache, mirror, tpch,
    cluster or all) with its baselines (security: auth/TLS off vs on; cache: result cache hits: neither is part
    of all; tpch: the 22 TPC-H queries at --scale vs DuckDB in-process; cluster: three server-mode
    nodes with their own redis-server and moto_server vs one node, not part of all)."""
    from rich.console import Console

    from . import report as rpt
    from .runner import Bench, Options
    from .services import ServiceError
    from .workloads import ALL, WORKLOADS

    names = ALL if workload == "all" else (workload,)
    if not uri:
        username = password = None  # the bench's own node has no auth
    if scale is None:
        scale = 0.1 if workload == "cluster" else 1.0
    if memory_rows is None:
        memory_rows = min(MEMORY_DEFAULT, 25 * rows) if workload == "all" else MEMORY_DEFAULT
    command = _command_line(click.get_current_context(), workload)
    opts = Options(workloads=names, uri=uri, rest_url=rest_url, username=username, password=password,
                   rows=rows, repeat=repeat, rest_rows=rest_rows, latency_queries=latency_queries,
                   memory_rows=memory_rows, seed=seed, scale=scale, keep_data=keep_data, command=command)
    console = Console(stderr=True, log_path=False)
    started = time.perf_counter()
    meta = {"command": command, "started_at": rpt.utc_now(), "repeat": repeat, "machine": rpt.machine_info(),
            "options": {"workloads": ",".join(names), "rows": rows, "repeat": repeat,
                        "rest_rows": min(rows, rest_rows), "latency_queries": latency_queries,
                        "memory_rows": memory_rows if "memory" in names else None, "seed": seed,
                        "scale": scale if {"tpch", "cluster"} & set(names) else None}}
    try:
        with Bench(opts, console) as b:
            b.results.meta.update(meta)
            for name in names:
                console.rule(f"[bold]{name}")
                try:
                    WORKLOADS[name](b)
                except errors.Unauthenticated:
                    raise
                except Exception as exc:  # noqa: BLE001 - report it, run the other workloads
                    b.failed(name, exc)
    except errors.MinioDBError as exc:
        console.print(f"[red]bench failed: {exc.code}: {exc.message}")
        sys.exit(1)
    except ServiceError as exc:
        console.print(f"[red]bench failed: {exc}")
        sys.exit(1)
    results = b.results
    results.meta["seconds"] = time.perf_counter() - started
    results.meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    for path, writer in ((report, rpt.write_markdown), (json_path, rpt.write_json)):
        if path:
            writer(results, path)
            console.log(f"wrote {path}")
    if plot:
        from .plot import PlotUnavailable, write_plot

        try:
            write_plot(results, plot)
            console.log(f"wrote {plot}")
        except PlotUnavailable as exc:  # no markup: rich would swallow "[bench]" as a style tag
            console.print(f"cannot write {plot}: {exc}", style="red", markup=False)
            b.failures.append("plot")
    Console().print(rpt.console_summary(results))
    console.log(f"done in {results.meta['seconds']:,.0f} s")
    if b.failures:
        sys.exit(1)


def _command_line(ctx: click.Context, workload: str) -> str:
    """The command as typed (options given on the command line; secrets masked)."""
    parts = ["miniodb bench", workload]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or ctx.get_parameter_source(p.name) != ParameterSource.COMMANDLINE:
            continue
        if p.is_flag:
            parts.append(p.opts[0])
        elif p.name == "password":
            parts.append(f"{p.opts[0]} ***")
        else:
            parts.append(f"{p.opts[0]} {shlex.quote(str(ctx.params[p.name]))}")
    return " ".join(parts)


def main() -> None:
    bench(prog_name="miniodb bench")


@click.command("bench", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
               add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def subcommand(ctx, args):
    """Benchmarks with side-by-side baselines (`miniodb bench --help`)."""
    defaults = {}  # `miniodb --uri X bench` measures X (and uses its credentials)
    parent = ctx.parent
    for name in ("uri", "username", "password"):
        if parent is not None and parent.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            defaults[name] = parent.params[name]
    bench.main(list(args), prog_name="miniodb bench", default_map=defaults)


if __name__ == "__main__":
    main()
