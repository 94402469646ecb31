"""``signlab scenario list | run``: the scenario catalogue (``scenarios/*.yaml``) and its runner.

``run`` drives a headless user agent through the real HTTP flow of the running ecosystem (it
starts the local runtime first when nothing is running, with ``--fault-injection``), prints progress per scenario and step,
a summary table, and exits 1 when any scenario fails or errors (skips do not fail the run; they
are listed with the reason). ``--junit`` and ``--html`` write the reports.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from signlab.commands import CommandError, hint
from signlab.commands.runtime import add_docker_options, docker_engine

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``scenario list`` and ``scenario run``."""
    group = commands.add_parser("scenario", help="list and run the end-to-end scenarios (scenarios/*.yaml)")
    sub = group.add_subparsers(dest="scenario_command", required=True, metavar="SUBCOMMAND")

    listing = sub.add_parser("list", help="list the scenarios (validates every file)")
    listing.add_argument("--tag", action="append", default=[], help="only scenarios with this tag (repeatable)")
    listing.add_argument("--dir", type=Path, default=None, help="scenario directory (default: ./scenarios)")
    listing.set_defaults(handler=_list)

    run = sub.add_parser("run", help="run scenarios against the ecosystem (starts it when not running)")
    run.add_argument("names", nargs="*", metavar="NAME", help="scenario names (file stems)")
    run.add_argument("--all", action="store_true", help="run every scenario")
    run.add_argument("--tag", action="append", default=[], help="run the scenarios with this tag (repeatable)")
    run.add_argument("--junit", type=Path, default=None, metavar="FILE", help="write a JUnit XML report")
    run.add_argument("--html", type=Path, default=None, metavar="FILE", help="write a self-contained HTML report")
    run.add_argument("--repeat", type=int, default=1, metavar="N", help="run each scenario N times (default 1)")
    run.add_argument("--dir", type=Path, default=None, help="scenario directory (default: ./scenarios)")
    run.add_argument("--quiet", action="store_true", help="print only one line per scenario and the summary")
    add_docker_options(run)
    run.set_defaults(handler=_run)


def _load(directory: Path | None) -> list[Any]:
    from signlab.scenarios.loader import ScenarioFormatError, load_all

    try:
        return load_all(directory)
    except ScenarioFormatError as exc:
        raise CommandError(f"invalid scenario file(s):\n{exc}", exit_code=2) from None
    except FileNotFoundError as exc:
        raise CommandError(f"no scenario directory: {exc}", exit_code=2) from None


def _select(scenarios: list[Any], names: list[str], tags: list[str], everything: bool) -> list[Any]:
    if not (names or tags or everything):
        raise CommandError("name scenarios, or use --all or --tag TAG (see 'signlab scenario list')", exit_code=2)
    by_name = {s.name: s for s in scenarios}
    unknown = [n for n in names if n.removesuffix(".yaml") not in by_name]
    if unknown:
        raise CommandError(f"unknown scenario(s): {', '.join(unknown)}; see 'signlab scenario list'", exit_code=2)
    if everything:
        return scenarios
    chosen = [by_name[n.removesuffix(".yaml")] for n in names]
    chosen += [s for s in scenarios if set(tags) & set(s.tags) and s not in chosen]
    if not chosen:
        raise CommandError(f"no scenario has the tag(s) {', '.join(tags)}", exit_code=2)
    return chosen


def _docker_ecosystem(args: argparse.Namespace) -> Any:
    """The ecosystem of the Docker deployment (``signlab up --engine docker`` or docker compose, the
    project of ``--env-file``), which must be healthy."""
    from signlab.docker_engine import ecosystem

    engine = docker_engine(args)
    unhealthy = [s.name for s in engine.status() if s.state != "healthy"]
    if unhealthy:
        raise CommandError(f"the Docker deployment of project {engine.project} is not healthy ({', '.join(unhealthy)}); "
                           "start it with 'signlab up --engine docker' (add --fault-injection for the whole catalogue)",
                           exit_code=2)
    return ecosystem(engine)


def _list(args: argparse.Namespace) -> int:
    scenarios = _load(args.dir)
    shown = [s for s in scenarios if not args.tag or set(args.tag) & set(s.tags)]
    width = max((len(s.name) for s in shown), default=4)
    for s in shown:
        print(f"{s.name.ljust(width)}  {','.join(s.tags):<28} {s.title}")
    print(f"\n{len(shown)} scenario(s). Run: signlab scenario run NAME… | --all | --tag TAG")
    return 0


def _run(args: argparse.Namespace) -> int:
    from signlab.commands.runtime import runtime_from
    from signlab.scenarios.environment import ecosystem_from_runtime
    from signlab.scenarios.report import exit_code, summary_table, write_html, write_junit
    from signlab.scenarios.runner import run_scenarios

    if args.repeat < 1:
        raise CommandError("--repeat must be at least 1", exit_code=2)
    scenarios = _select(_load(args.dir), args.names, args.tag, args.all)
    eco = _docker_ecosystem(args) if args.engine == "docker" else None
    if eco is None:
        runtime = runtime_from(args)
        if not runtime.running():
            print(f"SignLab is not running from {runtime.data_dir}: starting it with fault injection ...", flush=True)
            # Started for the scenarios: the guarded fault-injection admin APIs are on for this run.
            runtime = runtime_from(args, fault_injection=True)
            runtime.up(progress=lambda line: print(line, flush=True))
        elif len(runtime.running()) < 4:
            raise CommandError(f"SignLab is only partly running ({', '.join(runtime.running())}); "
                               f"run '{hint(args, 'down')}' and try again", exit_code=2)
        eco = ecosystem_from_runtime(runtime)

    def progress(line: str) -> None:
        if not args.quiet or not line.startswith("    "):
            print(line, flush=True)

    results = run_scenarios(scenarios, eco, repeat=args.repeat, progress=progress)
    print()
    print(summary_table(results))
    if args.junit:
        write_junit(results, args.junit)
        print(f"JUnit report: {args.junit.resolve()}")
    if args.html:
        write_html(results, args.html)
        print(f"HTML report: {args.html.resolve()}")
    return exit_code(results)
