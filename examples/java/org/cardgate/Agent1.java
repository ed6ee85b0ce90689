package org.cardgate;

import java.util.List;
import java.util.Map;

import org.freedesktop.dbus.DBusInterface;
import org.freedesktop.dbus.DBusSignal;
import org.freedesktop.dbus.UInt64;
import org.freedesktop.dbus.Variant;
import org.freedesktop.dbus.exceptions.DBusException;

/**
 * org.cardgate.Agent1 for dbus-java 2.8 (Debian's libdbus-java), written from the shipped
 * crates/ipc/interfaces/org.cardgate.Agent1.xml in the form dbus-java's CreateInterface tool
 * generates (Debian's package does not ship the tool): the Java interface's full name is the
 * D-Bus interface's, signals are nested classes, several out arguments are a Tuple, structs
 * are Struct classes. Only the members a PMR's gate needs; docs/ipc.md has them all.
 */
public interface Agent1 extends DBusInterface {
    /** Every property under its name, plus Warnings (as). */
    Map<String, Variant<?>> Status();

    /** Restricted. Host-typed passcode; returns the holder's role profiles. */
    List<RoleProfile> Login(String passcode, boolean confirm_final_try);

    void SelectRoleProfile(String id);

    void Logout();

    /** The gate: out arguments allowed, reason, message, generation. */
    Authorisation<Boolean, String, String, UInt64> Authorise(String action, String ods_code);

    /** A card left a reader (after the generation bump). */
    class CardRemoved extends DBusSignal {
        public final String reader;
        public final UInt64 generation;

        public CardRemoved(String path, String reader, UInt64 generation) throws DBusException {
            super(path, reader, generation);
            this.reader = reader;
            this.generation = generation;
        }
    }

    /** A session ended: reason (card-removed, logged-out, idle-timeout, ...), generation. */
    class SessionEnded extends DBusSignal {
        public final String reason;
        public final UInt64 generation;

        public SessionEnded(String path, String reason, UInt64 generation) throws DBusException {
            super(path, reason, generation);
            this.reason = reason;
            this.generation = generation;
        }
    }
}
