#!/usr/bin/python3
"""Typed-proxy test: every method of org.cardgate.Agent1 through a dbus-next proxy built from
the live service's own introspection, each reaching a successful reply at least once.

dbus-next checks each reply's signature against the introspection it was built from; this
test records every mismatch (of method replies, properties, Status values, signals and
PropertiesChanged values), carries on, and exits 1 if there was any, or if any method of
Agent1 (as the service introspects it) or Workstation1's CardStanding and Sessions never
answered successfully. It also sends one call with wrong-typed arguments and checks that the
agent answers with an error and keeps serving.

It drives the demo world through the demo-only interface org.cardgate.Demo1 (cards in and
out, the PIN pad's keypad, the self-service outbox), so it runs against
`cardgated-demo` only, on the system bus (DBUS_SYSTEM_BUS_ADDRESS: the demo's bus), with
the demo passcode in CARDGATE_PASSCODE. tests/clients.rs runs it in CI.
"""

import asyncio
import os
import re
import sys
import time

from dbus_next import BusType, DBusError, Message, MessageType
from dbus_next.aio import MessageBus
from dbus_next.constants import ErrorType

BUS_NAME = "org.cardgate.Agent"
AGENT_PATH = "/org/cardgate/Agent"
DEMO_PATH = "/org/cardgate/Demo"
AGENT = "org.cardgate.Agent1"
WORKSTATION = "org.cardgate.Workstation1"
DEMO = "org.cardgate.Demo1"
ERROR = "org.cardgate.Agent1.Error."
READER_0, READER_1, PIN_PAD = "Demo Reader 00 00", "Demo Reader 00 01", "Demo PIN Pad 00 02"
TAC_SERIAL = "4000000001"


def snake(name):
    """dbus-next's method names: CamelCase to snake_case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class TypedProxyTest:
    def __init__(self, bus, agent_node, demo_node, passcode):
        self.bus = bus
        self.passcode = passcode
        agent_object = bus.get_proxy_object(BUS_NAME, AGENT_PATH, agent_node)
        self.agent = agent_object.get_interface(AGENT)
        self.workstation = agent_object.get_interface(WORKSTATION)
        self.demo = bus.get_proxy_object(BUS_NAME, DEMO_PATH, demo_node).get_interface(DEMO)
        self.declared = {i.name: i for i in agent_node.interfaces + demo_node.interfaces}
        self.answered = set()  # (interface, method) that replied successfully
        self.mismatches = []
        self.signals_seen = set()
        self.wrong = 0  # makes every wrong passcode a new one (a repeated one is refused)

    def mismatch(self, text):
        print(f"MISMATCH {text}")
        self.mismatches.append(text)

    def method_info(self, interface, name):
        return next(m for m in self.declared[interface].methods if m.name == name)

    async def call(self, proxy, name, *args):
        """A method through the typed proxy; a reply of another signature than declared is
        recorded (and its body still returned, so the run goes on)."""
        interface = proxy.introspection.name
        declared = self.method_info(interface, name).out_signature
        try:
            result = await getattr(proxy, f"call_{snake(name)}")(*args)
        except DBusError as error:
            reply = error.reply
            if error.type != ErrorType.CLIENT_ERROR.value or reply is None \
                    or reply.message_type != MessageType.METHOD_RETURN:
                raise
            self.mismatch(f"{interface}.{name} replied {reply.signature!r}, "
                          f"its introspection declares {declared!r}")
            return reply.body[0] if len(reply.body) == 1 else reply.body
        if proxy is not self.demo:
            self.answered.add((interface, name))
            print(f"ok {interface}.{name} -> {declared!r}")
        return result

    async def call_error(self, proxy, name, *args, expect):
        """A call that must fail with one of the agent's errors named in `expect`."""
        try:
            await self.call(proxy, name, *args)
        except DBusError as error:
            if error.type not in [ERROR + e for e in expect]:
                raise AssertionError(f"{name}: expected {expect}, got {error.type}: {error.text}")
            return error.type[len(ERROR):]
        raise AssertionError(f"{name}: expected {expect}, got a successful reply")

    # --- the demo world ---------------------------------------------------------------

    async def status(self):
        return {k: v.value for k, v in (await self.call(self.agent, "Status")).items()}

    async def wait_for(self, what, condition, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            status = await self.status()
            if condition(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last Status: {status}")
            await asyncio.sleep(0.1)

    async def insert(self, card, reader):
        await self.call(self.demo, "InsertCard", card, reader)
        uuid = self.cards[card][2]
        await self.wait_for(f"{card} read in {reader}",
                            lambda s: any(r[0] == reader and r[1] for r in s["Readers"])
                            and s["HolderUuid"] == uuid)

    async def remove(self, reader):
        await self.call(self.demo, "RemoveCard", reader)
        await self.wait_for(f"{reader} empty",
                            lambda s: not any(r[0] == reader and r[1] for r in s["Readers"]))

    async def block_card(self):
        """Three wrong passcodes (the last confirmed as the final try): the card is blocked."""
        for _ in range(2):
            self.wrong += 1
            await self.call_error(self.agent, "Login", f"wr{self.wrong:04d}", False,
                                  expect=["WrongPasscode"])
        self.wrong += 1
        await self.call_error(self.agent, "Login", f"wr{self.wrong:04d}", False,
                              expect=["FinalTryNotConfirmed"])
        await self.call_error(self.agent, "Login", f"wr{self.wrong:04d}", True,
                              expect=["WrongPasscode", "CardBlocked"])
        await self.wait_for("the card blocked", lambda s: s["State"] == "card-locked")

    async def role_with(self, profiles, want):
        """Selects the first profile at one of the workstation's ODS codes for which
        `want(activities)` holds."""
        ods = await self.workstation_ods()
        profile = next((p for p in profiles if p[2] in ods and want(p[4])), None)
        if profile is None:
            raise AssertionError(f"no fitting role profile in {profiles}")
        await self.call(self.agent, "SelectRoleProfile", profile[0])
        return profile

    async def workstation_ods(self):
        return (await self.status())["WorkstationOdsCodes"]

    # --- properties and signals -------------------------------------------------------

    async def check_properties(self):
        """Every declared property through the typed getter (dbus-next checks the variant's
        signature), then GetAll and Status against the same declarations."""
        declared = {p.name: p.signature for p in self.declared[AGENT].properties}
        for name in declared:
            try:
                await getattr(self.agent, f"get_{snake(name)}")()
            except DBusError as error:
                if error.type != ErrorType.CLIENT_ERROR.value:
                    raise
                self.mismatch(f"property {name}: {error.text}, declared {declared[name]!r}")
        props = self.bus.get_proxy_object(BUS_NAME, AGENT_PATH, self.node) \
            .get_interface("org.freedesktop.DBus.Properties")
        everything = await props.call_get_all(AGENT)
        status = await self.call(self.agent, "Status")
        for source, values in (("GetAll", everything), ("Status", status)):
            for name, signature in declared.items():
                if name not in values:
                    self.mismatch(f"{source} lacks the property {name}")
                elif values[name].signature != signature:
                    self.mismatch(f"{source}[{name}] is {values[name].signature!r}, "
                                  f"declared {signature!r}")
        if status.get("Warnings") is None or status["Warnings"].signature != "as":
            self.mismatch(f"Status[Warnings] is not 'as': {status.get('Warnings')}")
        print(f"ok {len(declared)} properties read")

    def on_message(self, message):
        """Every signal of the agent against its declaration."""
        if message.message_type != MessageType.SIGNAL or message.path != AGENT_PATH:
            return
        if message.interface == "org.freedesktop.DBus.Properties":
            interface, changed = message.body[0], message.body[1]
            if interface != AGENT:
                return
            self.signals_seen.add("PropertiesChanged")
            declared = {p.name: p.signature for p in self.declared[AGENT].properties}
            for name, value in changed.items():
                if declared.get(name) != value.signature:
                    self.mismatch(f"PropertiesChanged {name} is {value.signature!r}, "
                                  f"declared {declared.get(name)!r}")
            return
        interface = self.declared.get(message.interface)
        if interface is None:
            return
        signal = next((s for s in interface.signals if s.name == message.member), None)
        if signal is None:
            self.mismatch(f"undeclared signal {message.interface}.{message.member}")
        elif signal.signature != message.signature:
            self.mismatch(f"signal {message.member} is {message.signature!r}, "
                          f"declared {signal.signature!r}")
        else:
            self.signals_seen.add(message.member)

    # --- the run ----------------------------------------------------------------------

    async def run(self, node):
        self.node = node
        self.bus.add_message_handler(self.on_message)
        await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s",
            body=[f"type='signal',sender='{BUS_NAME}',path='{AGENT_PATH}'"]))
        # Cards(): name, holder name, holder UUID, card serial, RA unlock code.
        self.cards = {c[0]: c for c in await self.call(self.demo, "Cards")}
        for needed in ("pharmacist", "dispenser", "manager", "expiring"):
            if needed not in self.cards:
                raise AssertionError(f"the demo has no {needed!r} card: {self.cards}")
        ods = (await self.workstation_ods())[0]
        pharmacist = self.cards["pharmacist"]
        await self.wait_for("the pharmacist's card read",
                            lambda s: s["HolderUuid"] == pharmacist[2])

        # The pharmacist's day: gate, log in, role, ticket, passcode change and back.
        await self.check_properties()
        await self.call(self.agent, "Authorise", "download", ods)
        await self.call(self.workstation, "CardStanding")
        profiles = await self.call(self.agent, "Login", self.passcode, False)
        await self.role_with(profiles, lambda activities: "eps.download" in activities)
        allowed, reason, _, _ = await self.call(self.agent, "Authorise", "download", ods)
        if not allowed:
            raise AssertionError(f"Authorise download {ods} after log-in: {reason}")
        await self.call(self.agent, "GetTicket")
        await self.call(self.agent, "ChangePasscode", self.passcode, "t1357v", False)
        await self.call(self.agent, "ChangePasscode", "t1357v", self.passcode, False)
        await self.call(self.workstation, "Sessions")
        await self.check_properties()
        await self.call(self.agent, "Logout")

        # The PIN pad: the holder types the passcode on the reader's keypad.
        await self.remove(READER_0)
        await self.call(self.demo, "EnterOnPinPad", self.passcode)
        await self.insert("pharmacist", PIN_PAD)
        await self.call(self.agent, "LoginWithPinPad", False)
        await self.call(self.agent, "Logout")
        # On the pad too: the passcode changed (current, new, confirmation) and back, and the
        # RA's unlock code with a new passcode (unlock code, new, confirmation).
        for value in (self.passcode, "t1357v", "t1357v"):
            await self.call(self.demo, "EnterOnPinPad", value)
        await self.call(self.agent, "ChangePasscodeWithPinPad", False)
        for value in ("t1357v", self.passcode, self.passcode):
            await self.call(self.demo, "EnterOnPinPad", value)
        await self.call(self.agent, "ChangePasscodeWithPinPad", False)
        for value in (pharmacist[4], self.passcode, self.passcode):
            await self.call(self.demo, "EnterOnPinPad", value)
        await self.call(self.agent, "UnlockWithCodeOnPinPad", False)
        await self.remove(PIN_PAD)

        # Unlock path 1, self-service: a one-time code sent to the holder's contact.
        dispenser = self.cards["dispenser"]
        await self.insert("dispenser", READER_0)
        await self.block_card()
        request_id, _ = await self.call(self.agent, "StartSelfServiceUnlock")
        outbox = await self.call(self.demo, "Outbox")
        codes = re.findall(r"\b\d{6}\b", outbox[-1]) if outbox else []
        if not codes:
            raise AssertionError(f"no one-time code in the demo's outbox: {outbox}")
        await self.call(self.agent, "UnlockWithOneTimeCode", request_id, codes[-1],
                        self.passcode)

        # Unlock path 3: the RA's unlock code.
        await self.block_card()
        await self.call(self.agent, "UnlockWithCode", dispenser[4], self.passcode, False)

        # Unlock path 2: the manager (Sponsor/LSA) unlocks the blocked card in the other
        # reader; then the TAC register under the same session.
        await self.block_card()
        await self.remove(READER_0)
        await self.call(self.demo, "InsertCard", "dispenser", READER_1)
        await self.insert("manager", READER_0)
        profiles = await self.call(self.agent, "Login", self.passcode, False)
        await self.role_with(profiles, lambda a: "admin.unlock" in a and "admin.tac" in a)
        await self.call(self.agent, "SponsorUnlock", dispenser[2], dispenser[3], self.passcode)
        now = int(time.time())
        await self.call(self.agent, "TacActivate", TAC_SERIAL, dispenser[2], "Pharmacy manager")
        await self.call(self.agent, "TacRecordUse", TAC_SERIAL, dispenser[2], now, now + 3600)
        await self.call(self.agent, "TacRead", TAC_SERIAL)
        await self.call(self.agent, "TacReturn", TAC_SERIAL)
        await self.call(self.agent, "Logout")
        await self.remove(READER_1)
        await self.remove(READER_0)

        # Renewal: the card whose certificate expires soon (key generation on the card:
        # seconds to a minute; dbus-next waits for the reply without a timeout).
        await self.insert("expiring", READER_0)
        profiles = await self.call(self.agent, "Login", self.passcode, False)
        await self.role_with(profiles, lambda activities: True)
        await self.call(self.agent, "RenewCertificate")
        await self.call(self.agent, "Logout")
        await self.check_properties()

        # Wrong-typed arguments: an error answer, and the agent still serves.
        reply = await self.bus.call(Message(
            destination=BUS_NAME, path=AGENT_PATH, interface=AGENT, member="Authorise",
            signature="si", body=["download", 5]))
        if reply.message_type != MessageType.ERROR:
            raise AssertionError(f"Authorise(si) answered {reply.message_type}: {reply.body}")
        print(f"wrong-typed arguments: {reply.error_name}")
        await self.status()

        # Every method of Agent1 (as the service itself declares it) answered successfully.
        expected = {(AGENT, m.name) for m in self.declared[AGENT].methods}
        expected |= {(WORKSTATION, "CardStanding"), (WORKSTATION, "Sessions")}
        missing = sorted(f"{i}.{m}" for i, m in expected - self.answered)
        print(f"signals seen: {', '.join(sorted(self.signals_seen))}")
        if missing:
            raise AssertionError(f"never answered successfully: {', '.join(missing)}")
        if self.mismatches:
            raise AssertionError(f"{len(self.mismatches)} signature mismatches:\n  "
                                 + "\n  ".join(self.mismatches))
        print(f"typed proxy: all {len(self.answered)} methods answered as introspected")


async def main():
    passcode = os.environ.get("CARDGATE_PASSCODE")
    if not passcode:
        print("set CARDGATE_PASSCODE to the demo passcode", file=sys.stderr)
        return 2
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    agent_node = await bus.introspect(BUS_NAME, AGENT_PATH)
    demo_node = await bus.introspect(BUS_NAME, DEMO_PATH)
    test = TypedProxyTest(bus, agent_node, demo_node, passcode)
    try:
        await test.run(agent_node)
    except (AssertionError, DBusError) as failure:
        if isinstance(failure, DBusError):
            failure = f"{failure.type}: {failure.text}"
        print(f"FAILED: {failure}")
        if test.mismatches:
            print(f"and {len(test.mismatches)} signature mismatches:\n  "
                  + "\n  ".join(test.mismatches))
        return 1
    finally:
        bus.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
