# Process helpers shared by deploy/kafka/kafka.sh, cluster.sh and deploy/registry/registry.sh
# (sourced; each script defines its own `log` and `die` first).

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Alive and not a zombie (an orphaned JVM is reaped by whatever PID 1 is, maybe late).
alive() { [[ -e "/proc/$1" && "$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

# pid_from FILE PATTERN: the pid in FILE if that process is alive and its command line
# matches *PATTERN* (a pid file alone is not enough: the pid may have been reused).
pid_from() {
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(cat "$1")"
    [[ -n "$pid" ]] && alive "$pid" || return 1
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"$2"* ]] || return 1
    echo "$pid"
}

# terminate PID SIGNAL SECONDS: send SIGNAL, wait up to SECONDS for the process to go,
# then SIGKILL it; dies if it outlives SIGKILL by 10 s.
terminate() {
    local pid="$1" deadline
    kill "-$2" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + $3))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "pid $pid still running after $3 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && die "pid $pid survived SIGKILL"
            break
        fi
        sleep 0.1
    done
}
