/*
 * A PMR's use of cardgate, in C with GDBus.
 *
 * The proxy (cardgate-agent1.[ch]) is generated at build time by gdbus-codegen from the
 * interface file the package ships, org.cardgate.Agent1.xml (see the Makefile). GDBus checks
 * every reply's signature against that file. The steps are the ones every PMR takes:
 *
 *   1. read Status (the card, the holder, the workstation's own ODS codes);
 *   2. log in through the agent (Login) and select the role profile for this pharmacy;
 *   3. gate an action (Authorise) and keep the decision together with its generation;
 *   4. wait for the card to leave the reader (CardRemoved, or SessionGeneration moving on):
 *      the kept decision is void from that moment;
 *   5. ask again: the answer is now "no-card".
 *
 * It connects to the system bus, as a PMR does in production, so DBUS_SYSTEM_BUS_ADDRESS
 * points it at the demo's bus (examples/README.md). The passcode comes from the environment
 * variable CARDGATE_PASSCODE and is never printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>

#include "cardgate-agent1.h"

#define ACTION "download"
#define LOCUM_ODS "FFFFF"

/* The decision the PMR keeps, and the loop that waits for it to be voided. */
typedef struct {
  guint64 generation;
  gboolean void_;
  GMainLoop *loop;
} Decision;

/* CardRemoved(s reader, t generation): the card left a reader. */
static void
on_card_removed (CardgateAgent1 *agent, const gchar *reader, guint64 generation, gpointer data)
{
  Decision *decision = data;
  if (generation > decision->generation)
    {
      decision->void_ = TRUE;
      g_main_loop_quit (decision->loop);
    }
}

/* PropertiesChanged of SessionGeneration: any session change voids earlier decisions too. */
static void
on_generation_changed (GObject *agent, GParamSpec *pspec, gpointer data)
{
  Decision *decision = data;
  if (cardgate_agent1_get_session_generation (CARDGATE_AGENT1 (agent)) > decision->generation)
    {
      decision->void_ = TRUE;
      g_main_loop_quit (decision->loop);
    }
}

/*
 * The role profile to select: one at this pharmacy, else a locum profile. Each profile is
 * (id, job_role, ods_code, organisation_name, activities). The ODS rule (docs/ipc.md,
 * cardgate-policy): Authorise always asks for one of the workstation's own ODS codes. A
 * profile at that code gates for it; a locum profile (ODS code FFFFF, the generic locum
 * organisation) gates for the workstation's code too if the workstation accepts locums.
 * Either way the PMR's Spine calls carry the workstation's ODS code, never FFFFF.
 * Returns the chosen profile (a new reference) or NULL.
 */
static GVariant *
choose_role (GVariant *profiles, const gchar *const *workstation_ods)
{
  GVariant *locum = NULL;
  for (gsize i = 0; i < g_variant_n_children (profiles); i++)
    {
      GVariant *profile = g_variant_get_child_value (profiles, i);
      const gchar *ods;
      g_variant_get_child (profile, 2, "&s", &ods);
      if (g_strv_contains (workstation_ods, ods))
        {
          g_clear_pointer (&locum, g_variant_unref);
          return profile;
        }
      if (locum == NULL && g_strcmp0 (ods, LOCUM_ODS) == 0)
        locum = profile;
      else
        g_variant_unref (profile);
    }
  return locum;
}

static int
fail (const gchar *what, GError *error)
{
  fprintf (stderr, "%s: %s\n", what, error->message);
  g_error_free (error);
  return 1;
}

int
main (void)
{
  GError *error = NULL;
  const gchar *passcode = g_getenv ("CARDGATE_PASSCODE");
  if (passcode == NULL || *passcode == '\0')
    {
      fprintf (stderr, "set CARDGATE_PASSCODE to the holder's passcode\n");
      return 2;
    }

  /* The system bus: DBUS_SYSTEM_BUS_ADDRESS, else the standard system bus socket. */
  CardgateAgent1 *agent = cardgate_agent1_proxy_new_for_bus_sync (
      G_BUS_TYPE_SYSTEM, G_DBUS_PROXY_FLAGS_NONE, "org.cardgate.Agent", "/org/cardgate/Agent",
      NULL, &error);
  if (agent == NULL)
    return fail ("connecting to cardgate", error);

  /* 1. Status: a{sv}, every property under its name, plus Warnings. */
  GVariant *status = NULL;
  if (!cardgate_agent1_call_status_sync (agent, &status, NULL, &error))
    return fail ("Status", error);
  const gchar *state = NULL, *holder = NULL;
  g_variant_lookup (status, "State", "&s", &state);
  g_variant_lookup (status, "HolderName", "&s", &holder);
  /* The pharmacy (two codes during an ODS code change) this workstation serves: what
   * Authorise is asked for. */
  const gchar **workstation_ods = NULL;
  if (!g_variant_lookup (status, "WorkstationOdsCodes", "^a&s", &workstation_ods)
      || workstation_ods[0] == NULL)
    {
      fprintf (stderr, "Status has no WorkstationOdsCodes (an agent older than issue 17)\n");
      return 1;
    }
  gchar *codes = g_strjoinv (",", (gchar **) workstation_ods);
  printf ("status: %s, holder '%s', workstation ODS codes %s\n", state, holder, codes);
  g_free (codes);

  /* 2. Log in through the agent: the passcode is verified on the card, never by us.
   * (Login is for kiosk-style clients with their own passcode field; the coming RequestLogin
   * replaces it for desktop apps, where the agent asks the holder itself.) */
  GVariant *profiles = NULL;
  if (!cardgate_agent1_call_login_sync (agent, passcode, FALSE, &profiles, NULL, &error))
    return fail ("Login", error);
  passcode = NULL;
  GVariant *role = choose_role (profiles, workstation_ods);
  if (role == NULL)
    {
      fprintf (stderr, "no role profile of this holder can act for this pharmacy\n");
      return 1;
    }
  const gchar *role_id, *job_role, *role_ods;
  g_variant_get (role, "(&s&s&s&s@as)", &role_id, &job_role, &role_ods, NULL, NULL);
  if (!cardgate_agent1_call_select_role_profile_sync (agent, role_id, NULL, &error))
    return fail ("SelectRoleProfile", error);
  printf ("role: %s (%s at %s)\n", role_id, job_role, role_ods);
  const gchar *ods = workstation_ods[0];

  /* Listen before acting, so that a removal between Authorise and the wait is not missed. */
  Decision decision = { G_MAXUINT64, FALSE, g_main_loop_new (NULL, FALSE) };
  g_signal_connect (agent, "card-removed", G_CALLBACK (on_card_removed), &decision);
  g_signal_connect (agent, "notify::session-generation", G_CALLBACK (on_generation_changed),
                    &decision);

  /* 3. Gate the action; keep the decision with the generation it was made under. */
  gboolean allowed;
  gchar *reason, *message;
  guint64 generation;
  if (!cardgate_agent1_call_authorise_sync (agent, ACTION, ods, &allowed, &reason, &message,
                                            &generation, NULL, &error))
    return fail ("Authorise", error);
  decision.generation = generation;
  printf ("authorise %s %s: %s (%s), generation %" G_GUINT64_FORMAT "\n", ACTION, ods,
          allowed ? "allowed" : "refused", reason, generation);
  if (!allowed)
    {
      fprintf (stderr, "  %s\n", message);
      return 1;
    }
  g_free (reason);
  g_free (message);

  /* 4. Wait for the card to go; from then on the kept decision is void. */
  printf ("waiting for card removal\n");
  fflush (stdout);
  if (cardgate_agent1_get_session_generation (agent) <= decision.generation)
    g_main_loop_run (decision.loop);
  printf ("card removed: the decision of generation %" G_GUINT64_FORMAT " is void\n",
          decision.generation);

  /* 5. Ask again: no card, no access. */
  if (!cardgate_agent1_call_authorise_sync (agent, ACTION, ods, &allowed, &reason, &message,
                                            &generation, NULL, &error))
    return fail ("Authorise", error);
  printf ("authorise %s %s: %s (%s), generation %" G_GUINT64_FORMAT "\n", ACTION, ods,
          allowed ? "allowed" : "refused", reason, generation);
  int code = g_strcmp0 (reason, "no-card") == 0 ? 0 : 1;

  g_free (reason);
  g_free (message);
  g_free (workstation_ods);
  g_variant_unref (role);
  g_variant_unref (profiles);
  g_variant_unref (status);
  g_main_loop_unref (decision.loop);
  g_object_unref (agent);
  return code;
}
