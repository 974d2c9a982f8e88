"""Typer sub-commands for the ``onestop`` CLI: ``mixin generate``, ``mixin check`` and ``dashboards push``.

Kept here so that the product CLI only has to mount them (``app.add_typer(mixin_app, name="mixin")`` and
``app.add_typer(dashboards_app, name="dashboards")``); ``python -m monitoring`` runs the same commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from monitoring.config import MixinConfigError, load_config

__all__ = ["mixin_app", "dashboards_app", "main"]

mixin_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Quy tắc Prometheus, cảnh báo, cấu hình Alertmanager, sổ tay xử lý (runbook) và dashboard "
                             "dưới dạng mã / Prometheus rules, alerts, Alertmanager config, runbook and dashboards as "
                             "code.")
dashboards_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Dashboard Grafana / Grafana dashboards.")

_CONFIG = typer.Option(None, "--config", exists=True, dir_okay=False,
                       help="Tệp YAML thay các giá trị mặc định của phần giám sát (monitoring/config.py) / YAML file "
                            "overriding the monitoring defaults (monitoring/config.py).")
_ROOT = typer.Option(None, "--root", file_okay=False, help="Thư mục gốc của kho mã để ghi vào (mặc định: bản checkout "
                                                           "này) / Repository root to write under (default: this "
                                                           "checkout).")


def _config(path: Optional[Path]):
    try:
        return load_config(path)
    except MixinConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@mixin_app.command("generate")
def generate_cmd(config: Optional[Path] = _CONFIG, root: Optional[Path] = _ROOT,
                 year: list[int] = typer.Option([], "--year", help="Năm lịch cần bao phủ (lặp lại được); mặc định: "
                                                                   "năm nay và năm sau / Calendar year to cover "
                                                                   "(repeat); default: the current and the next "
                                                                   "year.")) -> None:
    """Sinh lại alerts/ và dashboards/ từ cấu hình, danh mục 766 và lịch làm việc / Regenerate alerts/ and \
dashboards/ from the configuration, the 766 catalogue and the work calendar."""
    from monitoring.generate import REPO, write_all

    cfg = _config(config)
    changed = write_all(root or REPO, cfg, tuple(year) or None)
    for path in changed:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(changed)} file(s) changed", err=True)


@mixin_app.command("check")
def check_cmd(config: Optional[Path] = _CONFIG, root: Optional[Path] = _ROOT) -> None:
    """Thoát mã 1 nếu một tệp sinh ra đã commit khác với bản sinh mới (cho các năm lịch đã commit) / Exit 1 if a \
committed generated file differs from a fresh generation (for the committed calendar years)."""
    from monitoring.generate import REPO, check

    stale = check(root or REPO, _config(config))
    for rel in stale:
        typer.echo(f"stale: {rel}")
    if stale:
        typer.echo("run `onestop mixin generate` and commit the result", err=True)
        raise typer.Exit(1)
    typer.echo("generated files are up to date", err=True)


@dashboards_app.command("push")
def push_cmd(url: str = typer.Option(..., help="Địa chỉ gốc của Grafana, ví dụ https://grafana.example.org / Grafana "
                                                "base URL, e.g. https://grafana.example.org"),
             token: str = typer.Option(..., envvar="GRAFANA_TOKEN", help="Token của tài khoản dịch vụ (hoặc "
                                                                         "GRAFANA_TOKEN) / Service account token (or "
                                                                         "GRAFANA_TOKEN)."),
             config: Optional[Path] = _CONFIG) -> None:
    """Tạo hoặc ghi đè các dashboard đã commit vào một thư mục Grafana qua HTTP API / Create or overwrite the \
committed dashboards in a Grafana folder through the HTTP API."""
    from monitoring.push import push_dashboards

    result = push_dashboards(url, token, config=_config(config))
    for answer in result.dashboards:
        typer.echo(f"{answer.get('status', 'ok')}: {answer.get('uid')} version {answer.get('version')} "
                   f"{answer.get('url', '')}")


def main() -> None:
    root = typer.Typer(add_completion=False, no_args_is_help=True)
    root.add_typer(mixin_app, name="mixin")
    root.add_typer(dashboards_app, name="dashboards")
    root(prog_name="python -m monitoring")
