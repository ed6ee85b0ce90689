# The checks of the installed-system suite, sourced by scripts/installed once the container
# has booted. Each `check_NAME` runs in order against the one container (later checks build
# on the state earlier ones leave: the package installed, the agent started, the card in);
# a check fails by returning non-zero after saying why on stderr. `in_container` (from
# scripts/installed) runs a command in the container's namespaces.
#
# The world inside: the package installed with dpkg -i from /srv/cardgate-test, a test CA and
# one virtual card made there by the `vcard` tool (test equipment under
# /usr/local/libexec/cardgate-test, not in any package), the card kept in the first vpcd
# reader by the unit vcard@asha.service (a card sitting in a reader: back by itself after
# pcscd restarts), the administrator's configuration (tests/installed/cardgated.toml).

CHECKS=(install start_notify sandbox pcscd_through_polkit pcscd_refused_without_rule
        bus_policy pam_logind_lock pam_logind_terminate pcscd_restart dbus_restart journal
        remove_purge)

UUID=555000111222
# Distinctive passcodes, so that finding one in the journal cannot be a coincidence.
PASSCODE=Kq7Wm3Zx
WRONG=Jv4Ht8Rn
VCARD=/usr/local/libexec/cardgate-test/vcard
T=/srv/cardgate-test

c() { in_container "$@"; }
# A check's failures are counted even when a later line of it succeeds.
CHECK_FAILED=0
bad() { echo "    $*" >&2; CHECK_FAILED=1; return 1; }

# `wait_until SECONDS CMD...`: CMD until it succeeds, at most SECONDS.
wait_until() {
  local limit=$(( $1 * 4 )); shift
  for _ in $(seq 1 "$limit"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  return 1
}

prop() { c systemctl show -P "$2" "$1"; }
holder_seen() { c cardgate --json status | grep -q "\"$UUID\""; }

check_install() {
  c dpkg -i "$T/cardgate.deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; bad "dpkg -i failed"; return 1; }
  c dpkg-query -W -f='${Status}' cardgate | grep -q 'install ok installed' || bad "not installed"
  # Installing starts nothing and enables nothing: the agent needs configuring first.
  [ "$(prop cardgated.service ActiveState)" = inactive ] || bad "cardgated was started by dpkg -i"
  [ "$(c systemctl is-enabled cardgated.service 2>/dev/null)" = disabled ] \
    || bad "cardgated is $(c systemctl is-enabled cardgated.service) after installing, not disabled"
  c getent passwd cardgate | grep -q ':/var/lib/cardgate:' || bad "no cardgate account with its home"
  [ "$(c stat -c '%U:%G %a' /var/lib/cardgate)" = "cardgate:cardgate 750" ] \
    || bad "/var/lib/cardgate is $(c stat -c '%U:%G %a' /var/lib/cardgate)"
  # The administrator's part: the card CA, its CRL, the configuration; the card itself.
  c "$VCARD" ca init --dir "$T/ca" >/dev/null
  c "$VCARD" provision --ca "$T/ca" --out "$T/asha.json" --name "Asha Patel" --uuid "$UUID" \
    --serial 6516779193 --pin "$PASSCODE" >/dev/null
  # The endpoint: spine-sim on the container's loopback, knowing the card and its holder.
  c /usr/local/libexec/cardgate-test/spine-sim init --dir "$T/spine" >/dev/null
  c sh -c "cat > $T/spine.toml" <<SPINE
[server]
listen = "127.0.0.1:8443"
listen_mtls = "127.0.0.1:8444"
service_dir = "spine"
card_ca_dir = "ca"
outbox = "outbox.jsonl"
max_idle_time = 900

[[users]]
uid = "$UUID"
name = "Asha Patel"
[[users.role_profiles]]
id = "RP-1001"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download", "eps.dispense-notify", "eps.claim"]

[[cards]]
serial = "6516779193"
uid = "$UUID"
unlock_code = "12345678"
SPINE
  c systemd-run --quiet --unit=spine-sim /usr/local/libexec/cardgate-test/spine-sim --config "$T/spine.toml"
  c "$VCARD" ca crl --dir "$T/ca" --out /etc/cardgate/card.crl >/dev/null
  c install -m 0644 "$T/ca/ca.crt.pem" /etc/cardgate/card-ca.pem
  c install -m 0644 "$T/spine/service-ca.crt.pem" /etc/cardgate/service-ca.pem
  c install -m 0644 "$T/cardgated.toml" /etc/cardgate/cardgated.toml
  c cardgated --check-config /etc/cardgate/cardgated.toml >/dev/null || bad "the configuration is refused"
  c sh -c "cat > /etc/systemd/system/vcard@.service" <<'UNIT'
[Unit]
Description=virtual card %i in the first vpcd reader (test equipment)
After=pcscd.socket
StartLimitIntervalSec=0
[Service]
ExecStart=/usr/local/libexec/cardgate-test/vcard insert /srv/cardgate-test/%i.json --reader-port 35963
Restart=always
RestartSec=0.5
UNIT
  c systemctl daemon-reload
}

check_start_notify() {
  [ "$(prop cardgated.service Type)" = notify ] || bad "Type is $(prop cardgated.service Type)"
  local t=$SECONDS
  if ! c timeout 60 systemctl start cardgated.service; then
    c journalctl -u cardgated --no-pager -n 30 >&2
    bad "systemctl start cardgated did not succeed in 60 s"
    return 1
  fi
  # Readiness is READY=1 after the bus name is owned: when start returns, the agent answers.
  c busctl --system call org.cardgate.Agent /org/cardgate/Agent org.cardgate.Agent1 Status \
    >/dev/null 2>"$work/status.err" || { cat "$work/status.err" >&2; bad "the agent does not answer as soon as start returned"; }
  [ "$(prop cardgated.service ActiveState)/$(prop cardgated.service SubState)" = active/running ] \
    || bad "cardgated is $(prop cardgated.service ActiveState)/$(prop cardgated.service SubState)"
  echo "    started in $((SECONDS - t)) s"
}

check_sandbox() {
  local pid; pid="$(prop cardgated.service MainPID)"
  [ "$pid" -gt 0 ] || { bad "no main pid"; return 1; }
  [ "$(c ps -o user= -p "$pid")" = cardgate ] || bad "runs as $(c ps -o user= -p "$pid"), not cardgate"
  local st; st="$(c cat "/proc/$pid/status")"
  grep -q '^NoNewPrivs:[[:space:]]*1' <<<"$st" || bad "NoNewPrivs is not set"
  grep -q '^Seccomp:[[:space:]]*2' <<<"$st" || bad "no seccomp filter (SystemCallFilter)"
  grep -q '^CapEff:[[:space:]]*0000000000000000' <<<"$st" || bad "has capabilities: $(grep CapEff <<<"$st")"
  grep -q '^CapBnd:[[:space:]]*0000000000000000' <<<"$st" || bad "bounding set not empty: $(grep CapBnd <<<"$st")"
  local mounts; mounts="$(c cat "/proc/$pid/mountinfo")"
  # ProtectSystem=strict: / read-only; ReadWritePaths: the state directory writable.
  awk '$5 == "/" {print $6}' <<<"$mounts" | grep -q '^ro' || bad "/ is writable for the agent"
  awk '$5 == "/var/lib/cardgate" {print $6}' <<<"$mounts" | grep -q '^rw' || bad "/var/lib/cardgate is not its writable path"
  awk '$5 == "/home" {print $6}' <<<"$mounts" | grep -q . || bad "/home is not hidden (ProtectHome)"
  awk '$5 == "/tmp" {print $0}' <<<"$mounts" | grep -q . || bad "no private /tmp"
  [ "$(c cat "/proc/$pid/limits" | awk '/core file size/ {print $5}')" = 0 ] || bad "core dumps allowed"
}

check_pcscd_through_polkit() {
  # pcscd is socket-activated: the agent's first PC/SC call started it.
  [ "$(prop pcscd.service ActiveState)" = active ] || bad "pcscd is $(prop pcscd.service ActiveState)"
  [ "$(prop pcscd.service TriggeredBy)" = pcscd.socket ] || bad "pcscd not triggered by its socket"
  c systemctl start vcard@asha.service
  wait_until 20 holder_seen || {
    c cardgate status >&2; c journalctl -u pcscd -u cardgated --no-pager -n 20 >&2
    bad "the agent does not see the card's holder $UUID"; return 1; }
  # The rule, not luck: pcscd asked polkit and was told yes for the agent's account.
  local refusal; refusal="$(c journalctl -u pcscd --no-pager | grep "$PCSCD_REFUSAL" | tail -1 || true)"
  if [ -n "$refusal" ]; then
    bad "pcscd rejected a client: $refusal"
  fi
}

# What pcscd logs when it refuses a client: 1.9.x "Rejected unauthorized PC/SC client",
# 2.x (polkit said no) "... is NOT authorized for action".
PCSCD_REFUSAL='Rejected unauthorized\|NOT authorized'

# How many releases refused the agent pcscd without the rule (scripts/installed fails the run
# when none did: the rule must have been tested where it decides).
POLKIT_REFUSALS_SHOWN=0

check_pcscd_refused_without_rule() {
  local rule=/usr/share/polkit-1/rules.d/50-cardgate.rules rc=0
  if ! c pcscd -v | grep -q '^Enabled features:.*polkit'; then
    # Debian 12's pcscd (1.9.9) is built without polkit and serves every local account; the
    # rule cannot decide anything there. Said, and held to: should bookworm's pcscd ever ask
    # polkit, this branch is no longer taken and the refusal below is tested here too.
    echo "    $release: pcscd is built without polkit ($(c pcscd -v | grep '^Enabled features' | cut -c1-60)...): the refusal is tested on a release whose pcscd asks polkit"
    return 0
  fi
  c mv "$rule" "$T/rule.off"
  c systemctl restart polkit.service
  c systemctl restart cardgated.service
  # Without the rule pcscd refuses the agent's account: no reader, no holder.
  if wait_until 5 holder_seen; then bad "the agent saw the card without the polkit rule"; rc=1; fi
  c journalctl -u pcscd --no-pager | grep -q "$PCSCD_REFUSAL" \
    || { bad "pcscd did not log a rejection"; rc=1; }
  # The doctor, run as the agent's account, names the polkit refusal.
  c runuser -u cardgate -- cardgate doctor >"$work/doctor.out" 2>&1 || true
  grep -q polkit "$work/doctor.out" || { cat "$work/doctor.out" >&2; bad "cardgate doctor does not name polkit"; rc=1; }
  c mv "$T/rule.off" "$rule"
  c systemctl restart polkit.service
  c systemctl restart cardgated.service
  wait_until 20 holder_seen || { bad "with the rule back the agent does not see the card"; rc=1; }
  [ "$rc" -eq 0 ] && POLKIT_REFUSALS_SHOWN=$((POLKIT_REFUSALS_SHOWN + 1))
  return $rc
}

check_bus_policy() {
  c id clerk >/dev/null 2>&1 || c useradd --create-home clerk
  c id staffer >/dev/null 2>&1 || c useradd --create-home --groups cardgate staffer
  local rc=0 out
  # Anyone may read state.
  c runuser -u clerk -- busctl --system call org.cardgate.Agent /org/cardgate/Agent \
    org.cardgate.Agent1 Status >/dev/null 2>"$work/bus.err" || { cat "$work/bus.err" >&2; bad "clerk may not read Status"; rc=1; }
  # The restricted methods: the bus itself refuses a user outside the group (AccessDenied
  # from org.freedesktop.DBus, the message never reaching the agent).
  for call in "org.cardgate.Agent1 Login sb $WRONG false" "org.cardgate.Agent1 GetTicket" \
              "org.cardgate.Workstation1 Sessions" "org.cardgate.Agent1 ChangePasscode ssb $WRONG $WRONG false"; do
    # shellcheck disable=SC2086
    out="$(c runuser -u clerk -- busctl --system call org.cardgate.Agent /org/cardgate/Agent $call 2>&1)" && {
      bad "clerk may call $call: $out"; rc=1; continue; }
    grep -q 'Access denied\|AccessDenied\|rejected send message\|Rejected send message' <<<"$out" \
      || { bad "clerk calling $call was refused, but not by the bus: $out"; rc=1; }
  done
  # A member of the group passes the bus (the agent answers itself).
  out="$(c runuser -u staffer -- busctl --system call org.cardgate.Agent /org/cardgate/Agent \
    org.cardgate.Workstation1 Sessions 2>&1)" || { bad "staffer may not call Sessions: $out"; rc=1; }
  return $rc
}

# The PAM stack of a login program with the shipped module: the card and passcode
# authenticate (a log-in at the endpoint simulator), pam_systemd registers
# the session with logind, pam_cardgate's session part registers it with the agent.
pam_setup() {
  c id asha >/dev/null 2>&1 || c useradd --create-home --groups cardgate asha
  c sh -c "echo '$UUID asha' > /etc/cardgate/pam-users"
  c sh -c "cat > /etc/pam.d/cardgate-login" <<'PAM'
auth     required  pam_cardgate.so
account  required  pam_cardgate.so
session  required  pam_systemd.so
session  optional  pam_cardgate.so
PAM
}

# `removal_action ACTION`: the administrator's choice, and the agent restarted to read it.
removal_action() {
  c sed -i "s/^removal_action = .*/removal_action = \"$1\"/" /etc/cardgate/cardgated.toml
  c systemctl restart cardgated.service
  wait_until 20 holder_seen || bad "the agent does not see the card after restarting with removal_action = $1"
}

# `pam_authenticate`: pamtester through the real libpam with the passcode typed.
pam_authenticate() {
  printf '%s\n' "$PASSCODE" | c pamtester -v cardgate-login asha authenticate acct_mgmt >"$work/pam.out" 2>&1 \
    || { cat "$work/pam.out" >&2; bad "pamtester authenticate as asha failed"; return 1; }
}

# `open_session UNIT`: a login session for asha through the same PAM stack, opened by systemd
# for a service (PAMName=, as machinectl shell does), kept open by its process; prints the
# logind session id.
open_session() {
  c systemd-run --quiet --unit="$1" -p PAMName=cardgate-login -p User=asha \
    -p Environment=XDG_SESSION_TYPE=tty sleep 600 || { bad "systemd-run PAMName=cardgate-login failed"; return 1; }
  # The session of that service's own process (systemd 257 also gives asha's user manager a
  # session of its own, so "asha's session" alone is ambiguous).
  local id="" pid path
  for _ in $(seq 1 40); do
    pid="$(c systemctl show -P MainPID "$1")"
    if [ "${pid:-0}" -gt 0 ]; then
      path="$(c busctl --system call org.freedesktop.login1 /org/freedesktop/login1 \
        org.freedesktop.login1.Manager GetSessionByPID u "$pid" 2>/dev/null | awk '{print $2}' | tr -d '"')"
      [ -n "$path" ] && id="$(c busctl --system get-property org.freedesktop.login1 "$path" \
        org.freedesktop.login1.Session Id 2>/dev/null | awk '{print $2}' | tr -d '"')"
    fi
    [ -n "$id" ] && break
    sleep 0.25
  done
  [ -n "$id" ] || { c journalctl --no-pager -n 20 >&2; bad "no logind session for asha"; return 1; }
  echo "$id"
}

registered() { c busctl --system call org.cardgate.Agent /org/cardgate/Agent org.cardgate.Workstation1 Sessions | grep -q "\"$1\""; }

check_pam_logind_lock() {
  pam_setup
  removal_action lock || return 1
  pam_authenticate || return 1
  local id; id="$(open_session asha-session-1)" || return 1
  wait_until 10 registered "$id" || { c journalctl -u cardgated --no-pager -n 20 >&2; bad "session $id not registered with the agent"; return 1; }
  local path; path="$(c busctl --system call org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager GetSession s "$id" | awk '{print $2}' | tr -d '"')"
  # Watch the real logind's Lock signal on that session's object while the card is pulled.
  c sh -c "timeout 20 busctl --system monitor --match \"type='signal',sender='org.freedesktop.login1',interface='org.freedesktop.login1.Session',member='Lock',path='$path'\" > $T/lock.monitor 2>&1 &"
  sleep 1
  c systemctl stop vcard@asha.service
  wait_until 10 c grep -q "Member=Lock" "$T/lock.monitor" \
    || { c cat "$T/lock.monitor" >&2; c journalctl -u cardgated -u systemd-logind --no-pager -n 20 >&2; bad "logind sent no Lock for session $id after the card was pulled"; }
  # The session goes on, locked (the screen locker's business from here).
  [ "$(c loginctl show-session "$id" -P State 2>/dev/null)" != "" ] || bad "session $id is gone; lock should keep it"
  # The same card and passcode authenticate again.
  c systemctl start vcard@asha.service
  wait_until 20 holder_seen || bad "the card is not seen after it went back in"
  pam_authenticate
  c systemctl stop asha-session-1.service
}

check_pam_logind_terminate() {
  removal_action terminate || return 1
  pam_authenticate || return 1
  local id; id="$(open_session asha-session-2)" || return 1
  wait_until 10 registered "$id" || { bad "session $id not registered with the agent"; return 1; }
  c systemctl stop vcard@asha.service
  session_gone() { ! c loginctl show-session "$1" -P State 2>/dev/null | grep -q -e active -e online; }
  wait_until 10 session_gone "$id" \
    || { c loginctl show-session "$id" >&2; c journalctl -u cardgated --no-pager -n 20 >&2; bad "logind session $id was not ended after the card was pulled"; }
  c systemctl start vcard@asha.service
  wait_until 20 holder_seen || bad "the card is not seen after it went back in"
  pam_authenticate
  removal_action lock
}

check_pcscd_restart() {
  local pid; pid="$(prop cardgated.service MainPID)"
  c systemctl restart pcscd.service
  # The card comes back by itself (vcard@ reconnects, as a card left in a reader reappears).
  sleep 1
  wait_until 30 holder_seen || { c journalctl -u cardgated --no-pager -n 20 >&2; bad "the card is not seen again after pcscd restarted"; return 1; }
  [ "$(prop cardgated.service MainPID)" = "$pid" ] || bad "cardgated was restarted (pid $pid -> $(prop cardgated.service MainPID)); it should have recovered"
}

check_dbus_restart() {
  local restarts; restarts="$(prop cardgated.service NRestarts)"
  c systemctl restart dbus.service
  # The agent's connection is gone with the bus; it stops with an error and systemd's
  # Restart=on-failure brings it back on the new bus, where it answers again.
  wait_until 40 c busctl --system call org.cardgate.Agent /org/cardgate/Agent org.cardgate.Agent1 Status \
    || { c journalctl -u cardgated --no-pager -n 20 >&2; bad "the agent is not back on the bus after dbus restarted"; return 1; }
  [ "$(prop cardgated.service ActiveState)" = active ] || bad "cardgated is $(prop cardgated.service ActiveState)"
  echo "    restarts: $restarts -> $(prop cardgated.service NRestarts)"
  wait_until 20 holder_seen || bad "the card is not seen after dbus restarted"
}

check_journal() {
  # A wrong and a right passcode through the agent.
  printf '%s\n' "$WRONG" | c cardgate login --passcode-stdin >/dev/null 2>&1 || true
  printf '%s\n' "$PASSCODE" | c cardgate login --passcode-stdin >/dev/null 2>&1 || true
  c journalctl --sync 2>/dev/null || true
  local json; json="$(c journalctl -u cardgated -o json --no-pager)"
  grep -q '"SYSLOG_IDENTIFIER":"cardgated"' <<<"$json" || bad "no entry with SYSLOG_IDENTIFIER=cardgated"
  grep '"SYSLOG_IDENTIFIER":"cardgated"' <<<"$json" | grep -q '"PRIORITY":"6"' || bad "no info (6) entry of cardgated"
  grep '"SYSLOG_IDENTIFIER":"cardgated"' <<<"$json" | grep -q '"PRIORITY":"[0-4]"' || bad "no warning or error entry of cardgated (the bus loss, the refused reader list)"
  # No passcode anywhere in the journal, in any field of any unit.
  if c journalctl -o export --no-pager | grep -a -q -e "$PASSCODE" -e "$WRONG"; then
    bad "a passcode is in the journal"
  fi
}

check_remove_purge() {
  local rc=0
  c env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q cardgate >"$work/remove.log" 2>&1 \
    || { cat "$work/remove.log" >&2; bad "apt-get remove failed"; return 1; }
  [ "$(prop cardgated.service ActiveState)" = inactive ] || { bad "cardgated still $(prop cardgated.service ActiveState) after remove"; rc=1; }
  for gone in /usr/sbin/cardgated /usr/bin/cardgate /lib/systemd/system/cardgated.service \
              /usr/share/polkit-1/rules.d/50-cardgate.rules /usr/share/dbus-1/system.d/org.cardgate.Agent.conf; do
    c test ! -e "$gone" || { bad "$gone is still there after remove"; rc=1; }
  done
  # Remove keeps the configuration (conffiles) and the state (the audit trail).
  for kept in /etc/cardgate/cardgated.toml /etc/cardgate/pam-users /var/lib/cardgate/audit.jsonl; do
    c test -e "$kept" || { bad "$kept went with remove"; rc=1; }
  done
  c env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q cardgate >"$work/purge.log" 2>&1 \
    || { cat "$work/purge.log" >&2; bad "apt-get purge failed"; return 1; }
  c test ! -e /etc/cardgate/cardgated.toml || { bad "/etc/cardgate/cardgated.toml is still there after purge"; rc=1; }
  c test ! -e /var/lib/cardgate || { bad "/var/lib/cardgate is still there after purge"; rc=1; }
  if c grep -rqs cardgated /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked; then
    bad "deb-systemd-helper still has state for cardgated after purge"; rc=1
  fi
  # The account stays (Debian policy: its uid may own files elsewhere).
  c getent passwd cardgate >/dev/null || { bad "the cardgate account went with purge"; rc=1; }
  return $rc
}

run_checks() {
  local wanted=("$@") passed=0 failed=0 name t
  [ "${#wanted[@]}" -gt 0 ] || wanted=("${CHECKS[@]}")
  for name in "${wanted[@]}"; do
    declare -F "check_$name" >/dev/null || { echo "installed: no check '$name' (have: ${CHECKS[*]})" >&2; return 2; }
  done
  for name in "${wanted[@]}"; do
    t=$SECONDS
    CHECK_FAILED=0
    if "check_$name" && [ "$CHECK_FAILED" -eq 0 ]; then
      echo "test installed::$name ... ok ($((SECONDS - t)) s)"
      passed=$((passed + 1))
    else
      echo "test installed::$name ... FAILED ($((SECONDS - t)) s)"
      failed=$((failed + 1))
    fi
  done
  echo "installed: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
