#!/usr/bin/python3
"""A PMR's use of cardgate, in Python with dbus-next (Debian: python3-dbus-next).

The proxy is typed from the service's own introspection: dbus-next checks every reply's
signature against what the agent declares. The steps are the ones every PMR takes:

1. read Status (the card, the holder, the workstation's own ODS codes);
2. log in through the agent (Login) and select the role profile for this pharmacy;
3. gate an action (Authorise) and keep the decision together with its generation;
4. wait for the card to leave the reader (CardRemoved, or SessionGeneration moving on in
   PropertiesChanged): the kept decision is void from that moment;
5. ask again: the answer is now "no-card".

Run it against the demo (scripts/run in another terminal; see examples/README.md):

    DBUS_SYSTEM_BUS_ADDRESS=$(cat $XDG_RUNTIME_DIR/cardgate-demo.bus) \
    CARDGATE_PASSCODE=k2468m /usr/bin/python3 examples/python/pmr_client.py

It connects to the system bus, as a PMR does in production, so DBUS_SYSTEM_BUS_ADDRESS
points it at any other bus. The passcode comes from CARDGATE_PASSCODE and is never printed.
"""

import asyncio
import os
import sys

from dbus_next import BusType, DBusError
from dbus_next.aio import MessageBus

BUS_NAME = "org.cardgate.Agent"
PATH = "/org/cardgate/Agent"
AGENT = "org.cardgate.Agent1"
ACTION = "download"


def choose_role(profiles, workstation_ods):
    """The role profile to select: one at this pharmacy, else a locum profile.

    Each profile is (id, job_role, ods_code, organisation_name, activities). The ODS rule
    (docs/ipc.md, cardgate-policy): Authorise always asks for one of the workstation's own
    ODS codes. A profile at that code gates for it; a locum profile (ODS code FFFFF, the
    generic locum organisation) gates for the workstation's code too if the workstation
    accepts locums. Either way the PMR's Spine calls carry the workstation's ODS code, never
    FFFFF (GetTicket reports the profile's own code, FFFFF for a locum).
    """
    for profile in profiles:
        if profile[2] in workstation_ods:
            return profile
    for profile in profiles:
        if profile[2] == "FFFFF":
            return profile
    return None


async def main():
    passcode = os.environ.get("CARDGATE_PASSCODE")
    if not passcode:
        print("set CARDGATE_PASSCODE to the holder's passcode", file=sys.stderr)
        return 2

    # The system bus: DBUS_SYSTEM_BUS_ADDRESS, else the standard system bus socket.
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    introspection = await bus.introspect(BUS_NAME, PATH)
    agent_object = bus.get_proxy_object(BUS_NAME, PATH, introspection)
    agent = agent_object.get_interface(AGENT)
    properties = agent_object.get_interface("org.freedesktop.DBus.Properties")

    # 1. Status: a{sv}, every property under its name, plus Warnings.
    status = await agent.call_status()
    state = status["State"].value
    # The pharmacy (two codes during an ODS code change) this workstation serves: what
    # Authorise is asked for.
    workstation_ods = status["WorkstationOdsCodes"].value
    print(f"status: {state}, holder {status['HolderName'].value!r}, "
          f"workstation ODS codes {','.join(workstation_ods)}")

    # 2. Log in through the agent: the passcode is verified on the card, never by us.
    # (Login is for kiosk-style clients with their own passcode field; the coming
    # RequestLogin replaces it for desktop apps, where the agent asks the holder itself.)
    profiles = await agent.call_login(passcode, False)
    del passcode
    role = choose_role(profiles, workstation_ods)
    if role is None:
        print("no role profile of this holder can act for this pharmacy", file=sys.stderr)
        return 1
    await agent.call_select_role_profile(role[0])
    print(f"role: {role[0]} ({role[1]} at {role[2]})")
    ods = workstation_ods[0]

    # Listen before acting, so that a removal between Authorise and the wait is not missed.
    removed = asyncio.Event()
    decision = {}

    def on_card_removed(reader, generation):
        if decision and generation > decision["generation"]:
            removed.set()

    def on_properties_changed(interface, changed, invalidated):
        generation = changed.get("SessionGeneration")
        if interface == AGENT and generation is not None and decision \
                and generation.value > decision["generation"]:
            removed.set()

    agent.on_card_removed(on_card_removed)
    properties.on_properties_changed(on_properties_changed)

    # 3. Gate the action; keep the decision with the generation it was made under.
    allowed, reason, message, generation = await agent.call_authorise(ACTION, ods)
    decision.update(allowed=allowed, reason=reason, generation=generation)
    print(f"authorise {ACTION} {ods}: {'allowed' if allowed else 'refused'} ({reason}), "
          f"generation {generation}")
    if not allowed:
        print(f"  {message}", file=sys.stderr)
        return 1
    # The removal may have happened while Authorise was answered: check once, then wait.
    if await agent.get_session_generation() > generation:
        removed.set()

    # 4. Wait for the card to go; from then on the kept decision is void.
    print("waiting for card removal", flush=True)
    await removed.wait()
    decision.clear()
    print(f"card removed: the decision of generation {generation} is void")

    # 5. Ask again: no card, no access.
    allowed, reason, message, generation = await agent.call_authorise(ACTION, ods)
    print(f"authorise {ACTION} {ods}: {'allowed' if allowed else 'refused'} ({reason}), "
          f"generation {generation}")
    bus.disconnect()
    return 0 if reason == "no-card" else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except DBusError as error:
        print(f"cardgate: {error.type}: {error.text}", file=sys.stderr)
        sys.exit(1)
