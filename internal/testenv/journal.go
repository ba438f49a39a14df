package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A test binary that dies before its sweep (a panic, -timeout, Ctrl-C,
// SIGKILL) leaves its objects behind. So Main writes every name to a
// journal, os.TempDir()/eventkit-testenv/<pid>.names, as it is handed
// out, and removes the journal after a clean sweep; the next Main to start
// sweeps the journals of processes that no longer run, then removes them.

// journalMaxAge is how long a journal whose sweep keeps failing (a service
// that stays down) is retried before it is dropped.
const journalMaxAge = 24 * time.Hour

// faultMark is the journal line that says the process used the fault node.
const faultMark = "#fault"

func journalDir() string { return filepath.Join(os.TempDir(), "eventkit-testenv") }

// startJournal opens this process's journal and writes the names recorded
// so far; Track appends the next ones.
func startJournal() (path string, err error) {
	if err := os.MkdirAll(journalDir(), 0o700); err != nil {
		return "", err
	}
	path = filepath.Join(journalDir(), strconv.Itoa(os.Getpid())+".names")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	tracked.Lock()
	defer tracked.Unlock()
	tracked.journal = f
	for _, n := range tracked.names {
		journalLine(n)
	}
	if faultUsed.Load() {
		journalLine(faultMark)
	}
	return path, nil
}

// journalLine appends line to the journal, if any; tracked must be locked.
// One write each, so that a process killed right after still has it.
func journalLine(line string) {
	if tracked.journal != nil {
		_, _ = tracked.journal.WriteString(line + "\n")
	}
}

// markFault records in the journal that the process uses the fault node.
func markFault() {
	if faultUsed.Swap(true) {
		return
	}
	tracked.Lock()
	defer tracked.Unlock()
	journalLine(faultMark)
}

// closeJournal closes the journal and, when the sweep was clean, removes it.
func closeJournal(path string, clean bool) {
	tracked.Lock()
	defer tracked.Unlock()
	if tracked.journal != nil {
		_ = tracked.journal.Close()
		tracked.journal = nil
	}
	if clean {
		_ = os.Remove(path)
	}
}

// sweepOrphans sweeps the journals of test processes that no longer run
// (this pid's too: it is a dead process's), one process at a time per
// journal, and removes each after a clean sweep.
func sweepOrphans(ctx context.Context) (reps []*report) {
	paths, _ := filepath.Glob(filepath.Join(journalDir(), "*.names"))
	for _, path := range paths {
		pid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(path), ".names"))
		if err != nil || (pid != os.Getpid() && alive(pid)) {
			continue
		}
		if rep := sweepJournal(ctx, path); rep != nil {
			reps = append(reps, rep)
		}
	}
	return reps
}

// sweepJournal sweeps one dead process's journal, unless another process
// is at it.
func sweepJournal(ctx context.Context, path string) *report {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return nil
	}
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	if st, err := f.Stat(); err != nil || time.Since(st.ModTime()) > journalMaxAge {
		_ = os.Remove(path)
		return nil
	}
	var names []string
	fault := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		switch l := sc.Text(); {
		case l == faultMark:
			fault = true
		case len(l) >= minTracked:
			names = append(names, l)
		}
	}
	rep := sweep(ctx, names, fault)
	if len(rep.errs) == 0 && len(rep.notes) == 0 {
		_ = os.Remove(path)
	}
	return rep
}

// alive reports whether process pid runs (or may: another user's).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// String describes a report in one line per removed object, note and error.
func (r *report) String() string {
	var b strings.Builder
	for _, n := range r.notes {
		fmt.Fprintf(&b, "\t%s\n", n)
	}
	for _, o := range r.removed {
		fmt.Fprintf(&b, "\tremoved %s\n", o)
	}
	for _, e := range r.errs {
		fmt.Fprintf(&b, "\t%v\n", e)
	}
	return b.String()
}
