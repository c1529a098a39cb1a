"""List (or check) the pip requirements Home Assistant checks/installs at run time.

Run with the HA venv's python (Python 3.13); ``check_ha.py install`` runs it with ``--check``
after every install, so a cached venv is known to hold what Home Assistant would otherwise try
to pip-install at start-up (it starts with installs disabled, so a gap fails at once):

    <ha-venv>/bin/python tests/ha/ha_requirements.py [--check] mqtt recorder http api logger sensor

It mirrors homeassistant.requirements.RequirementsManager._async_process_integration:
an integration's own requirements, then recursively those of its ``dependencies``,
``after_dependencies`` and of the discovery integrations (zeroconf, ssdp, dhcp,
bluetooth, usb) whose keys its manifest has.  bootstrap's DEFAULT_INTEGRATIONS and
CORE_INTEGRATIONS are always added (HA sets them up without any YAML), and so are the
requirements of the default auth MFA module (totp), which HA installs at core start
(without them the core fails to initialise when pip is disabled).

With --check it exits 1 and names what is missing or at the wrong version.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

from homeassistant import bootstrap, loader
from homeassistant.auth.mfa_modules import totp
from homeassistant.core import HomeAssistant
from homeassistant.requirements import DISCOVERY_INTEGRATIONS
from homeassistant.util.package import is_installed


async def collect(domains: set[str]) -> tuple[dict[str, set[str]], set[str]]:
    with tempfile.TemporaryDirectory() as cfg:
        hass = HomeAssistant(cfg)
        loader.async_setup(hass)
        todo = set(domains) | bootstrap.DEFAULT_INTEGRATIONS | bootstrap.CORE_INTEGRATIONS
        seen: set[str] = set()
        reqs: dict[str, set[str]] = {}
        while todo:
            domain = todo.pop()
            if domain in seen:
                continue
            seen.add(domain)
            try:
                itg = await loader.async_get_integration(hass, domain)
            except loader.IntegrationNotFound:
                print(f"# not found: {domain}", file=sys.stderr)
                continue
            for r in itg.requirements:
                reqs.setdefault(r, set()).add(domain)
            todo.update(itg.dependencies, itg.after_dependencies)
            for check_domain, keys in DISCOVERY_INTEGRATIONS.items():
                if any(k in itg.manifest for k in keys):
                    todo.add(check_domain)
        for r in totp.REQUIREMENTS:
            reqs.setdefault(r, set()).add("auth.mfa_modules.totp")
        await hass.async_stop(force=True)
        return reqs, seen


def main(argv: list[str]) -> int:
    check = "--check" in argv
    domains = {a for a in argv if not a.startswith("-")}
    reqs, seen = asyncio.run(collect(domains))
    print(f"# {len(seen)} integrations: {' '.join(sorted(seen))}", file=sys.stderr)
    missing = []
    for r in sorted(reqs, key=str.lower):
        ok = is_installed(r)
        if not ok:
            missing.append(r)
        print(f"{r}  # {', '.join(sorted(reqs[r]))}{'' if ok else '  [MISSING]'}")
    if check and missing:
        print(f"missing: {' '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
