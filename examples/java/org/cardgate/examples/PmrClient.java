package org.cardgate.examples;

import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.cardgate.Agent1;
import org.cardgate.Authorisation;
import org.cardgate.RoleProfile;
import org.freedesktop.dbus.DBusConnection;
import org.freedesktop.dbus.DBusSigHandler;
import org.freedesktop.dbus.UInt64;
import org.freedesktop.dbus.Variant;
import org.freedesktop.dbus.exceptions.DBusException;
import org.freedesktop.dbus.exceptions.DBusExecutionException;

/**
 * A PMR's use of cardgate, in Java with dbus-java (Debian: libdbus-java). The steps every PMR
 * takes: read Status (the workstation's own ODS codes), log in through the agent, select the
 * role profile for this pharmacy, gate an action and keep the decision with its generation,
 * void it when the card leaves the reader (CardRemoved), ask again: "no-card".
 *
 * It connects to the system bus, as a PMR does in production, so DBUS_SYSTEM_BUS_ADDRESS
 * points it at the demo's bus (examples/README.md). The passcode comes from the environment
 * variable CARDGATE_PASSCODE and is never printed.
 */
public final class PmrClient {
    private static final String ACTION = "download";
    private static final String LOCUM_ODS = "FFFFF";

    /** The decision the PMR keeps: void once a removal's generation is past it. */
    private static volatile long keptGeneration = Long.MAX_VALUE;

    public static void main(String[] args) throws Exception {
        String passcode = System.getenv("CARDGATE_PASSCODE");
        if (passcode == null || passcode.isEmpty()) {
            System.err.println("set CARDGATE_PASSCODE to the holder's passcode");
            System.exit(2);
        }
        int code;
        // The system bus: DBUS_SYSTEM_BUS_ADDRESS, else the standard system bus socket.
        DBusConnection bus = DBusConnection.getConnection(DBusConnection.SYSTEM);
        try {
            code = run(bus, passcode);
        } catch (DBusExecutionException e) {
            System.err.println("cardgate: " + e.getType() + ": " + e.getMessage());
            code = 1;
        } finally {
            bus.disconnect();
        }
        System.exit(code);
    }

    private static int run(DBusConnection bus, String passcode) throws DBusException, InterruptedException {
        Agent1 agent = bus.getRemoteObject("org.cardgate.Agent", "/org/cardgate/Agent", Agent1.class);

        // 1. Status: a{sv}, every property under its name, plus Warnings.
        Map<String, Variant<?>> status = agent.Status();
        @SuppressWarnings("unchecked")
        List<String> workstationOds = (List<String>) status.get("WorkstationOdsCodes").getValue();
        System.out.printf("status: %s, holder '%s', workstation ODS codes %s%n",
                status.get("State").getValue(), status.get("HolderName").getValue(),
                String.join(",", workstationOds));

        // 2. Log in through the agent: the passcode is verified on the card, never by us.
        // (Login is for kiosk-style clients with their own passcode field; the coming
        // RequestLogin replaces it for desktop apps, where the agent asks the holder itself.)
        List<RoleProfile> profiles = agent.Login(passcode, false);
        RoleProfile role = chooseRole(profiles, workstationOds);
        if (role == null) {
            System.err.println("no role profile of this holder can act for this pharmacy");
            return 1;
        }
        agent.SelectRoleProfile(role.id);
        System.out.printf("role: %s (%s at %s)%n", role.id, role.jobRole, role.odsCode);
        String ods = workstationOds.get(0);

        // Listen before acting, so that a removal between Authorise and the wait is not missed.
        CountDownLatch removed = new CountDownLatch(1);
        DBusSigHandler<Agent1.CardRemoved> onRemoved = signal -> {
            if (signal.generation.longValue() > keptGeneration) {
                removed.countDown();
            }
        };
        bus.addSigHandler(Agent1.CardRemoved.class, onRemoved);

        // 3. Gate the action; keep the decision with the generation it was made under.
        Authorisation<Boolean, String, String, UInt64> decision = agent.Authorise(ACTION, ods);
        keptGeneration = decision.generation.longValue();
        printDecision(ods, decision);
        if (!decision.allowed) {
            System.err.println("  " + decision.message);
            return 1;
        }

        // 4. Wait for the card to go; from then on the kept decision is void.
        System.out.println("waiting for card removal");
        System.out.flush();
        removed.await();
        System.out.printf("card removed: the decision of generation %d is void%n", keptGeneration);
        bus.removeSigHandler(Agent1.CardRemoved.class, onRemoved);

        // 5. Ask again: no card, no access.
        decision = agent.Authorise(ACTION, ods);
        printDecision(ods, decision);
        return "no-card".equals(decision.reason) ? 0 : 1;
    }

    /**
     * The role profile to select: one at this pharmacy, else a locum profile. The ODS rule
     * (docs/ipc.md, cardgate-policy): Authorise always asks for one of the workstation's own
     * ODS codes. A profile at that code gates for it; a locum profile (ODS code FFFFF, the
     * generic locum organisation) gates for the workstation's code too if the workstation
     * accepts locums. Either way the PMR's Spine calls carry the workstation's ODS code,
     * never FFFFF.
     */
    private static RoleProfile chooseRole(List<RoleProfile> profiles, List<String> workstationOds) {
        for (RoleProfile profile : profiles) {
            if (workstationOds.contains(profile.odsCode)) {
                return profile;
            }
        }
        for (RoleProfile profile : profiles) {
            if (LOCUM_ODS.equals(profile.odsCode)) {
                return profile;
            }
        }
        return null;
    }

    private static void printDecision(String ods, Authorisation<Boolean, String, String, UInt64> d) {
        System.out.printf("authorise %s %s: %s (%s), generation %d%n", ACTION, ods,
                d.allowed ? "allowed" : "refused", d.reason, d.generation.longValue());
    }
}
