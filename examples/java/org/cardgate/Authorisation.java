package org.cardgate;

import org.freedesktop.dbus.Position;
import org.freedesktop.dbus.Tuple;

/**
 * Authorise's out arguments (b allowed, s reason, s message, t generation). Generic, as
 * CreateInterface writes tuples: dbus-java reads the reply's types from the type arguments.
 */
public final class Authorisation<A, B, C, D> extends Tuple {
    @Position(0)
    public final A allowed;
    @Position(1)
    public final B reason;
    @Position(2)
    public final C message;
    @Position(3)
    public final D generation;

    public Authorisation(A allowed, B reason, C message, D generation) {
        this.allowed = allowed;
        this.reason = reason;
        this.message = message;
        this.generation = generation;
    }
}
