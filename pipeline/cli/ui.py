"""`grille ui`: the campaign in the browser (a local server, on 127.0.0.1 only)."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from pipeline.cli.base import Context, cli, fail, open_campaign, pass_context, remember_campaign
from pipeline.settings import Workspace


@cli.command("ui")
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dossier de la campagne (par défaut : celui de « grille --dir », sinon le dossier "
    "courant).",
)
@click.option(
    "--port",
    type=click.IntRange(1024, 65535),
    default=8765,
    show_default=True,
    metavar="N",
    help="Port local de l'interface ; s'il est pris, le suivant libre.",
)
@click.option("--no-browser", is_flag=True, help="N'ouvre pas le navigateur.")
@pass_context
def ui(ctx: Context, root: Path | None, port: int, no_browser: bool) -> None:
    """Ouvre la campagne dans le navigateur (ou la crée) : réglages, liste, classeurs, suivi.

    Exemple : grille ui --dir stages-2027

    Démarre une petite application sur cet ordinateur seulement (127.0.0.1), affiche son
    adresse, avec un jeton secret, et l'ouvre dans le navigateur. Gardez cette adresse pour
    vous : elle donne accès à la campagne. Ctrl+C arrête l'interface.
    """
    from pipeline.parallel import start_worker_server
    from pipeline.ui import security, server
    from pipeline.ui.app import create_app, interface_of

    workspace = Workspace(root) if root is not None else ctx.workspace
    remember_campaign(workspace.root)  # a crash log goes to this campaign
    has_campaign = workspace.config_path.is_file()
    if has_campaign:
        with open_campaign(workspace, lock=False):
            pass  # a campaign that cannot be opened is named here, in French, before starting

    def busy(taken: int) -> None:
        click.echo(f"Le port {taken} est déjà utilisé (par un autre programme) : essai du suivant.")

    try:
        sock = server.bind_port(port, on_busy=busy)
    except server.NoFreePort as exc:
        fail(f"aucun port libre entre {exc} : indiquez-en un autre avec --port.", 2)
    except OSError as exc:
        fail(f"impossible d'ouvrir le port {port} sur cet ordinateur ({exc.strerror}).", 2)
    chosen = sock.getsockname()[1]
    secrets = security.Secrets.new()
    start_worker_server()  # generate and collect then start their workers at once
    app = create_app(workspace, secrets, chosen, warm_interval=1.0)
    url = f"http://{server.HOST}:{chosen}/?{security.TOKEN_PARAM}={secrets.token}"
    if has_campaign:
        click.echo(f"Interface de grille pour la campagne {workspace.root} :")
    else:
        click.echo(
            f"Aucune campagne dans « {workspace.root} » (grille.toml absent) : l'interface "
            "s'ouvre sur la page Campagne, pour la créer ou ouvrir un autre dossier :"
        )
    click.echo(f"  {url}")
    click.echo(
        "Cette adresse contient un jeton secret qui donne accès à la campagne : ne la "
        "partagez pas. Ctrl+C arrête l'interface."
    )
    if not no_browser and not webbrowser.open(url):
        click.echo(
            "Aucun navigateur n'a pu être ouvert : copiez l'adresse ci-dessus dans le vôtre."
        )
    server.serve(app, sock)
    access = interface_of(app).access  # the campaign opened last (« Ouvrir une campagne »)
    refresher = access.refresher
    due = refresher.pending
    if not refresher.flush(lambda: click.echo("Mise à jour de output/suivi.xlsx…")):
        click.echo(f"Attention — suivi non mis à jour : {refresher.problem}", err=True)
    elif due:
        for warning in refresher.warnings:
            click.echo(warning, err=True)
    access.close()
    click.echo("Interface arrêtée.")
