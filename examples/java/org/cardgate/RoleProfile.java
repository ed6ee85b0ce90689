package org.cardgate;

import java.util.List;

import org.freedesktop.dbus.Position;
import org.freedesktop.dbus.Struct;

/** A role profile, (ssssas): id, job_role, ods_code, organisation_name, activities. */
public final class RoleProfile extends Struct {
    @Position(0)
    public final String id;
    @Position(1)
    public final String jobRole;
    @Position(2)
    public final String odsCode;
    @Position(3)
    public final String organisationName;
    @Position(4)
    public final List<String> activities;

    public RoleProfile(String id, String jobRole, String odsCode, String organisationName,
            List<String> activities) {
        this.id = id;
        this.jobRole = jobRole;
        this.odsCode = odsCode;
        this.organisationName = organisationName;
        this.activities = activities;
    }
}
