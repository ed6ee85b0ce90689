/*
 * Typed-proxy test in C: every method of org.cardgate.Agent1 through the GDBus proxy that
 * gdbus-codegen generated from the shipped org.cardgate.Agent1.xml, each reaching a
 * successful reply at least once.
 *
 * GDBus checks each reply's signature against the interface info the proxy was generated
 * from, so a reply of another type fails the call. Besides the calls, the test compares the
 * running service's own introspection with the shipped XML member by member (what a client
 * generated from the file relies on), reads every declared property, checks every signal the
 * agent sends against its declaration, and sends one call with wrong-typed arguments (the
 * agent must answer an error and keep serving). Any mismatch fails the run (exit 1) after
 * everything is listed.
 *
 * It drives the demo world through the demo-only org.cardgate.Demo1 (no generated code: the
 * file is not shipped), so it runs against `cardgated-demo` only, on the system bus
 * (DBUS_SYSTEM_BUS_ADDRESS: the demo's bus), with the demo passcode in CARDGATE_PASSCODE.
 * tests/clients.rs builds and runs it in CI.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gio/gio.h>

#include "cardgate-agent1.h"
#include "cardgate-workstation1.h"

#define BUS_NAME "org.cardgate.Agent"
#define AGENT_PATH "/org/cardgate/Agent"
#define DEMO_PATH "/org/cardgate/Demo"
#define DEMO "org.cardgate.Demo1"
#define ERROR_PREFIX "org.cardgate.Agent1.Error."
#define READER_0 "Demo Reader 00 00"
#define READER_1 "Demo Reader 00 01"
#define PIN_PAD "Demo PIN Pad 00 02"
#define TAC_SERIAL "4000000001"
#define NEW_PASSCODE "t1357v"

static GDBusConnection *bus;
static CardgateAgent1 *agent;
static CardgateWorkstation1 *workstation;
static const gchar *passcode;
static GHashTable *answered;   /* "Interface.Method" that replied successfully */
static GPtrArray *mismatches;  /* what differs from the declarations */
static GHashTable *signals_seen;
static int wrong_count;        /* every wrong passcode is a new one (a repeat is refused) */

static void
mismatch (const gchar *format, ...)
{
  va_list args;
  va_start (args, format);
  gchar *text = g_strdup_vprintf (format, args);
  va_end (args);
  printf ("MISMATCH %s\n", text);
  g_ptr_array_add (mismatches, text);
}

static G_NORETURN void
die (const gchar *format, ...)
{
  va_list args;
  va_start (args, format);
  gchar *text = g_strdup_vprintf (format, args);
  va_end (args);
  printf ("FAILED: %s\n", text);
  for (guint i = 0; i < mismatches->len; i++)
    printf ("  mismatch: %s\n", (gchar *) mismatches->pdata[i]);
  exit (1);
}

/* The concatenated signature of a method's or signal's arguments. */
static gchar *
args_signature (GDBusArgInfo **args)
{
  GString *s = g_string_new ("");
  for (; args != NULL && *args != NULL; args++)
    g_string_append (s, (*args)->signature);
  return g_string_free (s, FALSE);
}

static GDBusInterfaceInfo *
info_of (const gchar *interface)
{
  return g_str_equal (interface, "org.cardgate.Agent1") ? cardgate_agent1_interface_info ()
                                                         : cardgate_workstation1_interface_info ();
}

/* A method of the generated proxy answered: remember it, say so. */
static void
ok (const gchar *interface, const gchar *method)
{
  GDBusMethodInfo *m = g_dbus_interface_info_lookup_method (info_of (interface), method);
  gchar *out = args_signature (m->out_args);
  printf ("ok %s.%s -> '%s'\n", interface, method, out);
  g_free (out);
  g_hash_table_add (answered, g_strconcat (interface, ".", method, NULL));
}

/* A failed call through a generated proxy: GDBus's reply-type check names the mismatch. */
static G_NORETURN void
call_failed (const gchar *interface, const gchar *method, GError *error)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT)
      && strstr (error->message, "returned type") != NULL)
    mismatch ("%s.%s: %s", interface, method, error->message);
  die ("%s.%s: %s", interface, method, error->message);
}

/* Runs one generated `_sync` call (EXPR uses `&error`); a failure ends the run. */
#define CALL(interface, method, expr)                                                           \
  do                                                                                           \
    {                                                                                          \
      GError *error = NULL;                                                                    \
      if (!(expr))                                                                             \
        call_failed (interface, method, error);                                                \
      ok (interface, method);                                                                  \
    }                                                                                          \
  while (0)
#define AGENT1 "org.cardgate.Agent1"
#define WORKSTATION1 "org.cardgate.Workstation1"

/* The remote error name without the agent's prefix, of a call that must fail. */
static const gchar *
expect_error (const gchar *what, gboolean succeeded, GError *error, const gchar *const *names)
{
  if (succeeded)
    die ("%s: expected an error, got a successful reply", what);
  gchar *remote = g_dbus_error_get_remote_error (error);
  for (; *names != NULL; names++)
    if (remote != NULL && g_str_has_prefix (remote, ERROR_PREFIX)
        && g_str_equal (remote + strlen (ERROR_PREFIX), *names))
      {
        g_free (remote);
        g_error_free (error);
        return *names;
      }
  die ("%s: unexpected error %s: %s", what, remote ? remote : "(local)", error->message);
}

/* A Demo1 method (the demo's controls), reply checked against REPLY_TYPE by GDBus. */
static GVariant *
demo (const gchar *method, GVariant *args, const gchar *reply_type)
{
  GError *error = NULL;
  GVariant *reply = g_dbus_connection_call_sync (bus, BUS_NAME, DEMO_PATH, DEMO, method, args,
                                                 G_VARIANT_TYPE (reply_type),
                                                 G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  if (reply == NULL)
    die ("%s.%s: %s", DEMO, method, error->message);
  return reply;
}

static void
pump (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static GVariant *
status (void)
{
  GVariant *out = NULL;
  CALL (AGENT1, "Status", cardgate_agent1_call_status_sync (agent, &out, NULL, &error));
  return out;
}

/* Whether READER holds a card, per Status's Readers (a(sbb): name, card present, PIN pad). */
static gboolean
reader_has_card (GVariant *st, const gchar *reader)
{
  GVariant *readers = g_variant_lookup_value (st, "Readers", G_VARIANT_TYPE ("a(sbb)"));
  gboolean found = FALSE;
  if (readers != NULL)
    {
      GVariantIter iter;
      const gchar *name;
      gboolean present, pad;
      g_variant_iter_init (&iter, readers);
      while (g_variant_iter_next (&iter, "(&sbb)", &name, &present, &pad))
        if (g_str_equal (name, reader) && present)
          found = TRUE;
      g_variant_unref (readers);
    }
  return found;
}

/* Polls Status until READER holds a card (or not) and, if HOLDER is given, the active card
 * is that holder's. */
static void
wait_reader (const gchar *reader, gboolean present, const gchar *holder)
{
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  for (;;)
    {
      GVariant *st = status ();
      const gchar *uuid = "";
      g_variant_lookup (st, "HolderUuid", "&s", &uuid);
      gboolean done = reader_has_card (st, reader) == present
                      && (holder == NULL || g_str_equal (uuid, holder));
      gchar *text = g_variant_print (st, FALSE);
      g_variant_unref (st);
      if (done)
        {
          g_free (text);
          return;
        }
      if (g_get_monotonic_time () > deadline)
        die ("timed out waiting for %s %s; last Status: %s", reader,
             present ? "to hold a card" : "to be empty", text);
      g_free (text);
      pump ();
      g_usleep (100 * 1000);
    }
}

static const gchar *
state (void)
{
  static gchar value[64];
  GVariant *st = status ();
  const gchar *s = "";
  g_variant_lookup (st, "State", "&s", &s);
  g_strlcpy (value, s, sizeof value);
  g_variant_unref (st);
  return value;
}

/* The demo cards: name -> (holder name, holder UUID, card serial, RA unlock code). */
static GHashTable *cards;

static const gchar *
card_field (const gchar *card, guint field)
{
  GVariant *c = g_hash_table_lookup (cards, card);
  if (c == NULL)
    die ("the demo has no '%s' card", card);
  const gchar *value;
  g_variant_get_child (c, field, "&s", &value);
  return value;
}

static void
insert (const gchar *card, const gchar *reader)
{
  g_variant_unref (demo ("InsertCard", g_variant_new ("(ss)", card, reader), "()"));
  wait_reader (reader, TRUE, card_field (card, 2));
}

static void
remove_card (const gchar *reader)
{
  g_variant_unref (demo ("RemoveCard", g_variant_new ("(s)", reader), "()"));
  wait_reader (reader, FALSE, NULL);
}

/* One Login that must fail with one of NAMES. */
static void
login_refused (const gchar *code, gboolean confirm, const gchar *const *names)
{
  GError *error = NULL;
  GVariant *profiles = NULL;
  gboolean done = cardgate_agent1_call_login_sync (agent, code, confirm, &profiles, NULL, &error);
  expect_error ("Login with a wrong passcode", done, error, names);
}

/* Three wrong passcodes, the last confirmed as the final try: the card is blocked. */
static void
block_card (void)
{
  static const gchar *const wrong[] = { "WrongPasscode", NULL };
  static const gchar *const final_try[] = { "FinalTryNotConfirmed", NULL };
  static const gchar *const last[] = { "WrongPasscode", "CardBlocked", NULL };
  gchar code[16];
  for (int i = 0; i < 2; i++)
    {
      g_snprintf (code, sizeof code, "wr%04d", ++wrong_count);
      login_refused (code, FALSE, wrong);
    }
  g_snprintf (code, sizeof code, "wr%04d", ++wrong_count);
  login_refused (code, FALSE, final_try);
  login_refused (code, TRUE, last);
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (!g_str_equal (state (), "card-locked"))
    {
      if (g_get_monotonic_time () > deadline)
        die ("the card is not card-locked after three wrong passcodes: %s", state ());
      g_usleep (100 * 1000);
    }
}

/* The workstation's own ODS codes (Status's WorkstationOdsCodes). */
static gchar **
workstation_ods (void)
{
  GVariant *st = status ();
  gchar **codes = NULL;
  if (!g_variant_lookup (st, "WorkstationOdsCodes", "^as", &codes) || codes[0] == NULL)
    die ("Status has no WorkstationOdsCodes");
  g_variant_unref (st);
  return codes;
}

/* Selects the first of PROFILES (a(ssssas)) at a workstation ODS code holding every one of
 * the activities in WANT (NULL-terminated). */
static void
select_role (GVariant *profiles, const gchar *const *want)
{
  gchar **ods = workstation_ods ();
  GVariantIter iter;
  const gchar *id, *job, *code, *org;
  GVariant *activities;
  g_variant_iter_init (&iter, profiles);
  while (g_variant_iter_next (&iter, "(&s&s&s&s@as)", &id, &job, &code, &org, &activities))
    {
      gsize n;
      const gchar **have = g_variant_get_strv (activities, &n);
      gboolean fits = g_strv_contains ((const gchar *const *) ods, code);
      for (const gchar *const *w = want; fits && *w != NULL; w++)
        fits = g_strv_contains (have, *w);
      g_free (have);
      g_variant_unref (activities);
      if (fits)
        {
          CALL (AGENT1, "SelectRoleProfile",
                cardgate_agent1_call_select_role_profile_sync (agent, id, NULL, &error));
          g_strfreev (ods);
          return;
        }
    }
  gchar *text = g_variant_print (profiles, FALSE);
  die ("no fitting role profile in %s", text);
}

/* The running service's introspection against the shipped XML, member by member. */
static void
compare_introspection (void)
{
  GError *error = NULL;
  GVariant *reply = g_dbus_connection_call_sync (
      bus, BUS_NAME, AGENT_PATH, "org.freedesktop.DBus.Introspectable", "Introspect", NULL,
      G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  if (reply == NULL)
    die ("Introspect: %s", error->message);
  const gchar *xml;
  g_variant_get (reply, "(&s)", &xml);
  GDBusNodeInfo *node = g_dbus_node_info_new_for_xml (xml, &error);
  if (node == NULL)
    die ("the live introspection does not parse: %s", error->message);
  GDBusInterfaceInfo *shipped[] = { cardgate_agent1_interface_info (),
                                    cardgate_workstation1_interface_info () };
  for (gsize i = 0; i < G_N_ELEMENTS (shipped); i++)
    {
      GDBusInterfaceInfo *want = shipped[i];
      GDBusInterfaceInfo *live = g_dbus_node_info_lookup_interface (node, want->name);
      if (live == NULL)
        {
          mismatch ("the service has no interface %s", want->name);
          continue;
        }
      for (GDBusMethodInfo **m = want->methods; m && *m; m++)
        {
          GDBusMethodInfo *l = g_dbus_interface_info_lookup_method (live, (*m)->name);
          if (l == NULL)
            {
              mismatch ("%s.%s is not in the live introspection", want->name, (*m)->name);
              continue;
            }
          gchar *wi = args_signature ((*m)->in_args), *li = args_signature (l->in_args);
          gchar *wo = args_signature ((*m)->out_args), *lo = args_signature (l->out_args);
          if (!g_str_equal (wi, li) || !g_str_equal (wo, lo))
            mismatch ("%s.%s: the shipped XML says (%s) -> '%s', the service (%s) -> '%s'",
                      want->name, (*m)->name, wi, wo, li, lo);
          g_free (wi), g_free (li), g_free (wo), g_free (lo);
        }
      for (GDBusMethodInfo **l = live->methods; l && *l; l++)
        if (g_dbus_interface_info_lookup_method (want, (*l)->name) == NULL)
          mismatch ("%s.%s is served but not in the shipped XML", want->name, (*l)->name);
      for (GDBusSignalInfo **s = want->signals; s && *s; s++)
        {
          GDBusSignalInfo *l = g_dbus_interface_info_lookup_signal (live, (*s)->name);
          gchar *w = args_signature ((*s)->args), *ls = l ? args_signature (l->args) : NULL;
          if (l == NULL || !g_str_equal (w, ls))
            mismatch ("signal %s.%s: shipped '%s', live %s", want->name, (*s)->name, w,
                      ls ? ls : "(none)");
          g_free (w), g_free (ls);
        }
      for (GDBusPropertyInfo **p = want->properties; p && *p; p++)
        {
          GDBusPropertyInfo *l = g_dbus_interface_info_lookup_property (live, (*p)->name);
          if (l == NULL || !g_str_equal ((*p)->signature, l->signature))
            mismatch ("property %s.%s: shipped '%s', live %s", want->name, (*p)->name,
                      (*p)->signature, l ? l->signature : "(none)");
        }
    }
  g_dbus_node_info_unref (node);
  g_variant_unref (reply);
  printf ("ok the live introspection compared with the shipped XML\n");
}

/* Every declared property: its Get reply's type, the generated proxy's cache (GDBus drops
 * a property of the wrong type from it), and Status's value under the same name. */
static void
check_properties (void)
{
  pump ();
  GVariant *st = status ();
  GDBusInterfaceInfo *info = cardgate_agent1_interface_info ();
  guint n = 0;
  for (GDBusPropertyInfo **p = info->properties; p && *p; p++, n++)
    {
      GError *error = NULL;
      GVariant *reply = g_dbus_connection_call_sync (
          bus, BUS_NAME, AGENT_PATH, "org.freedesktop.DBus.Properties", "Get",
          g_variant_new ("(ss)", info->name, (*p)->name), G_VARIANT_TYPE ("(v)"),
          G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
      if (reply == NULL)
        {
          mismatch ("property %s: Get failed: %s", (*p)->name, error->message);
          g_error_free (error);
          continue;
        }
      GVariant *value;
      g_variant_get (reply, "(v)", &value);
      if (!g_str_equal (g_variant_get_type_string (value), (*p)->signature))
        mismatch ("property %s is '%s', declared '%s'", (*p)->name,
                  g_variant_get_type_string (value), (*p)->signature);
      g_variant_unref (value);
      g_variant_unref (reply);
      GVariant *cached = g_dbus_proxy_get_cached_property (G_DBUS_PROXY (agent), (*p)->name);
      if (cached == NULL)
        mismatch ("property %s is not in the generated proxy's cache", (*p)->name);
      else
        g_variant_unref (cached);
      GVariant *in_status = g_variant_lookup_value (st, (*p)->name, NULL);
      if (in_status == NULL)
        mismatch ("Status lacks the property %s", (*p)->name);
      else
        {
          if (!g_str_equal (g_variant_get_type_string (in_status), (*p)->signature))
            mismatch ("Status[%s] is '%s', declared '%s'", (*p)->name,
                      g_variant_get_type_string (in_status), (*p)->signature);
          g_variant_unref (in_status);
        }
    }
  GVariant *warnings = g_variant_lookup_value (st, "Warnings", NULL);
  if (warnings == NULL || !g_variant_is_of_type (warnings, G_VARIANT_TYPE ("as")))
    mismatch ("Status[Warnings] is not 'as'");
  g_clear_pointer (&warnings, g_variant_unref);
  g_variant_unref (st);
  /* And through the generated getters, as an integrator reads them. */
  printf ("ok %u properties read (State %s, generation %" G_GUINT64_FORMAT ", tries %d)\n", n,
          cardgate_agent1_get_state (agent), cardgate_agent1_get_session_generation (agent),
          cardgate_agent1_get_passcode_tries_left (agent));
}

/* Every signal from the agent's object against its declaration (a raw subscription: the
 * generated proxy drops a signal of the wrong type with only a warning). */
static void
on_signal (GDBusConnection *connection, const gchar *sender, const gchar *path,
           const gchar *interface, const gchar *member, GVariant *parameters, gpointer data)
{
  const gchar *type = g_variant_get_type_string (parameters);
  if (g_str_equal (interface, "org.freedesktop.DBus.Properties"))
    {
      const gchar *iface;
      GVariant *changed;
      g_variant_get (parameters, "(&s@a{sv}@as)", &iface, &changed, NULL);
      GDBusInterfaceInfo *info = cardgate_agent1_interface_info ();
      if (g_str_equal (iface, info->name))
        {
          g_hash_table_add (signals_seen, g_strdup ("PropertiesChanged"));
          GVariantIter iter;
          const gchar *name;
          GVariant *value;
          g_variant_iter_init (&iter, changed);
          while (g_variant_iter_next (&iter, "{&sv}", &name, &value))
            {
              GDBusPropertyInfo *p = g_dbus_interface_info_lookup_property (info, name);
              if (p == NULL || !g_str_equal (p->signature, g_variant_get_type_string (value)))
                mismatch ("PropertiesChanged %s is '%s', declared '%s'", name,
                          g_variant_get_type_string (value), p ? p->signature : "(none)");
              g_variant_unref (value);
            }
        }
      g_variant_unref (changed);
      return;
    }
  if (!g_str_equal (interface, AGENT1) && !g_str_equal (interface, WORKSTATION1))
    return;
  GDBusSignalInfo *s = g_dbus_interface_info_lookup_signal (info_of (interface), member);
  gchar *declared = s ? args_signature (s->args) : NULL;
  gchar *wanted = declared ? g_strdup_printf ("(%s)", declared) : NULL;
  if (s == NULL)
    mismatch ("undeclared signal %s.%s", interface, member);
  else if (!g_str_equal (wanted, type))
    mismatch ("signal %s is '%s', declared '(%s)'", member, type, declared);
  else
    g_hash_table_add (signals_seen, g_strdup (member));
  g_free (declared);
  g_free (wanted);
}

int
main (void)
{
  GError *error = NULL;
  passcode = g_getenv ("CARDGATE_PASSCODE");
  if (passcode == NULL || *passcode == '\0')
    {
      fprintf (stderr, "set CARDGATE_PASSCODE to the demo passcode\n");
      return 2;
    }
  setvbuf (stdout, NULL, _IOLBF, 0);
  answered = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  signals_seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  mismatches = g_ptr_array_new_with_free_func (g_free);

  /* The system bus: DBUS_SYSTEM_BUS_ADDRESS, else the standard system bus socket. */
  bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
  if (bus == NULL)
    die ("connecting to the bus: %s", error->message);
  agent = cardgate_agent1_proxy_new_sync (bus, G_DBUS_PROXY_FLAGS_NONE, BUS_NAME, AGENT_PATH,
                                          NULL, &error);
  if (agent == NULL)
    die ("the Agent1 proxy: %s", error->message);
  workstation = cardgate_workstation1_proxy_new_sync (bus, G_DBUS_PROXY_FLAGS_NONE, BUS_NAME,
                                                      AGENT_PATH, NULL, &error);
  if (workstation == NULL)
    die ("the Workstation1 proxy: %s", error->message);
  /* RenewCertificate generates a key on the card: seconds to a minute. */
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (agent), 180 * 1000);
  g_dbus_connection_signal_subscribe (bus, BUS_NAME, NULL, NULL, AGENT_PATH, NULL,
                                      G_DBUS_SIGNAL_FLAGS_NONE, on_signal, NULL, NULL);

  compare_introspection ();

  /* Cards(): name, holder name, holder UUID, card serial, RA unlock code. */
  cards = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                 (GDestroyNotify) g_variant_unref);
  GVariant *reply = demo ("Cards", NULL, "(a(sssss))");
  GVariant *list = g_variant_get_child_value (reply, 0);
  for (gsize i = 0; i < g_variant_n_children (list); i++)
    {
      GVariant *c = g_variant_get_child_value (list, i);
      const gchar *name;
      g_variant_get_child (c, 0, "&s", &name);
      g_hash_table_insert (cards, g_strdup (name), c);
    }
  g_variant_unref (list);
  g_variant_unref (reply);
  gchar **ods = workstation_ods ();
  const gchar *pharmacist = card_field ("pharmacist", 2);
  wait_reader (READER_0, TRUE, pharmacist);

  /* The pharmacist's day: gate, log in, role, ticket, passcode change and back. */
  check_properties ();
  gboolean allowed;
  gchar *reason, *message, *s1, *s2, *s3, *s4, *s5;
  guint64 generation;
  CALL (AGENT1, "Authorise",
        cardgate_agent1_call_authorise_sync (agent, "download", ods[0], &allowed, &reason,
                                             &message, &generation, NULL, &error));
  g_free (reason), g_free (message);
  CALL (WORKSTATION1, "CardStanding",
        cardgate_workstation1_call_card_standing_sync (workstation, &s1, &s2, &s3, &s4, NULL,
                                                       &error));
  g_free (s1), g_free (s2), g_free (s3), g_free (s4);
  GVariant *profiles;
  CALL (AGENT1, "Login",
        cardgate_agent1_call_login_sync (agent, passcode, FALSE, &profiles, NULL, &error));
  select_role (profiles, (const gchar *const[]){ "eps.download", NULL });
  g_variant_unref (profiles);
  CALL (AGENT1, "Authorise",
        cardgate_agent1_call_authorise_sync (agent, "download", ods[0], &allowed, &reason,
                                             &message, &generation, NULL, &error));
  if (!allowed)
    die ("Authorise download %s after log-in: %s", ods[0], reason);
  g_free (reason), g_free (message);
  CALL (AGENT1, "GetTicket",
        cardgate_agent1_call_get_ticket_sync (agent, &s1, &s2, &s3, &s4, &s5, NULL, &error));
  g_free (s1), g_free (s2), g_free (s3), g_free (s4), g_free (s5);
  CALL (AGENT1, "ChangePasscode",
        cardgate_agent1_call_change_passcode_sync (agent, passcode, NEW_PASSCODE, FALSE, NULL,
                                                   &error));
  CALL (AGENT1, "ChangePasscode",
        cardgate_agent1_call_change_passcode_sync (agent, NEW_PASSCODE, passcode, FALSE, NULL,
                                                   &error));
  GVariant *sessions;
  CALL (WORKSTATION1, "Sessions",
        cardgate_workstation1_call_sessions_sync (workstation, &sessions, NULL, &error));
  g_variant_unref (sessions);
  check_properties ();
  CALL (AGENT1, "Logout", cardgate_agent1_call_logout_sync (agent, NULL, &error));

  /* The PIN pad: the holder types the passcode on the reader's keypad. */
  remove_card (READER_0);
  g_variant_unref (demo ("EnterOnPinPad", g_variant_new ("(s)", passcode), "()"));
  insert ("pharmacist", PIN_PAD);
  CALL (AGENT1, "LoginWithPinPad",
        cardgate_agent1_call_login_with_pin_pad_sync (agent, FALSE, &profiles, NULL, &error));
  g_variant_unref (profiles);
  CALL (AGENT1, "Logout", cardgate_agent1_call_logout_sync (agent, NULL, &error));
  /* On the pad too: the passcode changed (current, new, confirmation) and back, and the RA's
   * unlock code with a new passcode (unlock code, new, confirmation). */
  const gchar *change_there[] = { passcode, NEW_PASSCODE, NEW_PASSCODE };
  const gchar *change_back[] = { NEW_PASSCODE, passcode, passcode };
  const gchar *unlock[] = { card_field ("pharmacist", 4), passcode, passcode };
  for (guint i = 0; i < 3; i++)
    g_variant_unref (demo ("EnterOnPinPad", g_variant_new ("(s)", change_there[i]), "()"));
  CALL (AGENT1, "ChangePasscodeWithPinPad",
        cardgate_agent1_call_change_passcode_with_pin_pad_sync (agent, FALSE, NULL, &error));
  for (guint i = 0; i < 3; i++)
    g_variant_unref (demo ("EnterOnPinPad", g_variant_new ("(s)", change_back[i]), "()"));
  CALL (AGENT1, "ChangePasscodeWithPinPad",
        cardgate_agent1_call_change_passcode_with_pin_pad_sync (agent, FALSE, NULL, &error));
  for (guint i = 0; i < 3; i++)
    g_variant_unref (demo ("EnterOnPinPad", g_variant_new ("(s)", unlock[i]), "()"));
  CALL (AGENT1, "UnlockWithCodeOnPinPad",
        cardgate_agent1_call_unlock_with_code_on_pin_pad_sync (agent, FALSE, NULL, &error));
  remove_card (PIN_PAD);

  /* Unlock path 1, self-service: a one-time code sent to the holder's contact. */
  insert ("dispenser", READER_0);
  block_card ();
  gchar *request_id, *sent_to;
  CALL (AGENT1, "StartSelfServiceUnlock",
        cardgate_agent1_call_start_self_service_unlock_sync (agent, &request_id, &sent_to,
                                                             NULL, &error));
  reply = demo ("Outbox", NULL, "(as)");
  const gchar **outbox = NULL;
  g_variant_get (reply, "(^a&s)", &outbox);
  GMatchInfo *match = NULL;
  GRegex *six_digits = g_regex_new ("\\b\\d{6}\\b", 0, 0, NULL);
  guint n = g_strv_length ((gchar **) outbox);
  if (n == 0 || !g_regex_match (six_digits, outbox[n - 1], 0, &match))
    die ("no one-time code in the demo's outbox");
  gchar *code = g_match_info_fetch (match, 0);
  g_match_info_free (match);
  g_regex_unref (six_digits);
  g_free (outbox);
  g_variant_unref (reply);
  CALL (AGENT1, "UnlockWithOneTimeCode",
        cardgate_agent1_call_unlock_with_one_time_code_sync (agent, request_id, code, passcode,
                                                             NULL, &error));
  g_free (code), g_free (request_id), g_free (sent_to);

  /* Unlock path 3: the RA's unlock code. */
  block_card ();
  CALL (AGENT1, "UnlockWithCode",
        cardgate_agent1_call_unlock_with_code_sync (agent, card_field ("dispenser", 4),
                                                    passcode, FALSE, NULL, &error));

  /* Unlock path 2: the manager (Sponsor/LSA) unlocks the blocked card in the other reader;
   * then the TAC register under the same session. */
  block_card ();
  remove_card (READER_0);
  g_variant_unref (demo ("InsertCard", g_variant_new ("(ss)", "dispenser", READER_1), "()"));
  insert ("manager", READER_0);
  wait_reader (READER_1, TRUE, card_field ("manager", 2));
  CALL (AGENT1, "Login",
        cardgate_agent1_call_login_sync (agent, passcode, FALSE, &profiles, NULL, &error));
  select_role (profiles, (const gchar *const[]){ "admin.unlock", "admin.tac", NULL });
  g_variant_unref (profiles);
  const gchar *holder = card_field ("dispenser", 2);
  CALL (AGENT1, "SponsorUnlock",
        cardgate_agent1_call_sponsor_unlock_sync (agent, holder, card_field ("dispenser", 3),
                                                  passcode, NULL, &error));
  gint64 now = time (NULL);
  GVariant *reg, *history;
#define TAC_OUT &s1, &s2, &s3, &s4, &reg, &history
#define TAC_FREE g_free (s1), g_free (s2), g_free (s3), g_free (s4), g_variant_unref (reg), \
                 g_variant_unref (history)
  CALL (AGENT1, "TacActivate",
        cardgate_agent1_call_tac_activate_sync (agent, TAC_SERIAL, holder, "Pharmacy manager",
                                                TAC_OUT, NULL, &error));
  TAC_FREE;
  CALL (AGENT1, "TacRecordUse",
        cardgate_agent1_call_tac_record_use_sync (agent, TAC_SERIAL, holder, now, now + 3600,
                                                  TAC_OUT, NULL, &error));
  TAC_FREE;
  CALL (AGENT1, "TacRead",
        cardgate_agent1_call_tac_read_sync (agent, TAC_SERIAL, TAC_OUT, NULL, &error));
  TAC_FREE;
  CALL (AGENT1, "TacReturn",
        cardgate_agent1_call_tac_return_sync (agent, TAC_SERIAL, TAC_OUT, NULL, &error));
  TAC_FREE;
  CALL (AGENT1, "Logout", cardgate_agent1_call_logout_sync (agent, NULL, &error));
  remove_card (READER_1);
  remove_card (READER_0);

  /* Renewal: the card whose certificate expires soon (a key generated on the card). */
  insert ("expiring", READER_0);
  CALL (AGENT1, "Login",
        cardgate_agent1_call_login_sync (agent, passcode, FALSE, &profiles, NULL, &error));
  select_role (profiles, (const gchar *const[]){ NULL });
  g_variant_unref (profiles);
  gint64 not_after;
  CALL (AGENT1, "RenewCertificate",
        cardgate_agent1_call_renew_certificate_sync (agent, &not_after, NULL, &error));
  CALL (AGENT1, "Logout", cardgate_agent1_call_logout_sync (agent, NULL, &error));
  check_properties ();

  /* Wrong-typed arguments: an error answer, and the agent still serves. */
  reply = g_dbus_connection_call_sync (bus, BUS_NAME, AGENT_PATH, AGENT1, "Authorise",
                                       g_variant_new ("(si)", "download", 5), NULL,
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  if (reply != NULL)
    die ("Authorise(si) answered %s", g_variant_print (reply, TRUE));
  gchar *remote = g_dbus_error_get_remote_error (error);
  if (remote == NULL)
    die ("Authorise(si) failed locally, not with the agent's answer: %s", error->message);
  printf ("wrong-typed arguments: %s\n", remote);
  g_free (remote);
  g_clear_error (&error);
  g_variant_unref (status ());
  pump ();

  /* Every method of Agent1 (and Workstation1's CardStanding, Sessions) answered. */
  GString *missing = g_string_new ("");
  for (GDBusMethodInfo **m = cardgate_agent1_interface_info ()->methods; m && *m; m++)
    {
      gchar *key = g_strconcat (AGENT1, ".", (*m)->name, NULL);
      if (!g_hash_table_contains (answered, key))
        g_string_append_printf (missing, " %s", key);
      g_free (key);
    }
  const gchar *ws[] = { WORKSTATION1 ".CardStanding", WORKSTATION1 ".Sessions" };
  for (gsize i = 0; i < G_N_ELEMENTS (ws); i++)
    if (!g_hash_table_contains (answered, ws[i]))
      g_string_append_printf (missing, " %s", ws[i]);
  GList *seen = g_list_sort (g_hash_table_get_keys (signals_seen), (GCompareFunc) strcmp);
  printf ("signals seen:");
  for (GList *l = seen; l != NULL; l = l->next)
    printf (" %s", (gchar *) l->data);
  printf ("\n");
  g_list_free (seen);
  if (missing->len > 0)
    die ("never answered successfully:%s", missing->str);
  if (mismatches->len > 0)
    die ("%u signature mismatches", mismatches->len);
  printf ("typed proxy: all %u methods answered as declared\n", g_hash_table_size (answered));
  g_string_free (missing, TRUE);
  g_strfreev (ods);
  g_hash_table_unref (cards);
  g_object_unref (workstation);
  g_object_unref (agent);
  g_object_unref (bus);
  return 0;
}
