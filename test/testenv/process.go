package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessSpec describes a child process.
type ProcessSpec struct {
	// Name labels the process in errors and names its log file.
	Name string
	Path string
	Args []string
	// Env is added to this process's environment.
	Env []string
	// LogFile receives the process's stdout and stderr.
	LogFile string
}

// Process is a child process this package started. Stop ends exactly it.
type Process struct {
	Name    string
	LogFile string

	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}

	mu      sync.Mutex
	waitErr error
	stopped bool
}

// noProxy keeps child processes from sending loopback traffic to a proxy
// named in the environment.
var noProxyEnv = []string{"NO_PROXY=127.0.0.1,::1,localhost", "no_proxy=127.0.0.1,::1,localhost"}

// StartProcess starts a child process with its output in spec.LogFile. The
// child gets SIGKILL if this process dies first (Linux), so an interrupted
// test run leaves nothing behind.
func StartProcess(spec ProcessSpec) (*Process, error) {
	if spec.Name == "" || spec.Path == "" || spec.LogFile == "" {
		return nil, fmt.Errorf("start process: name %q, path %q and log file %q are all required", spec.Name, spec.Path, spec.LogFile)
	}
	if err := os.MkdirAll(filepath.Dir(spec.LogFile), 0o755); err != nil {
		return nil, fmt.Errorf("start %s: log directory: %w", spec.Name, err)
	}
	lf, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", spec.Name, err)
	}
	fmt.Fprintf(lf, "### %s %s %s\n", time.Now().Format(time.RFC3339), spec.Path, strings.Join(spec.Args, " "))
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(append(os.Environ(), noProxyEnv...), spec.Env...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", spec.Name, spec.Path, err)
	}
	p := &Process{Name: spec.Name, LogFile: spec.LogFile, cmd: cmd, log: lf, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		lf.Close()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitError describes how the process ended; nil while it runs.
func (p *Process) ExitError() error {
	select {
	case <-p.exited:
	default:
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waitErr == nil {
		return fmt.Errorf("%s exited with status 0", p.Name)
	}
	return fmt.Errorf("%s exited: %w", p.Name, p.waitErr)
}

// Stop sends SIGTERM, waits up to grace, then sends SIGKILL. It is safe to
// call more than once.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	already := p.stopped
	p.stopped = true
	p.mu.Unlock()
	select {
	case <-p.exited:
		return nil
	default:
	}
	if !already {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stop %s: %w", p.Name, err)
		}
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("stop %s: pid %d did not exit after SIGKILL", p.Name, p.Pid())
	}
}

// LogTail returns the last n lines of the process's log.
func (p *Process) LogTail(n int) string {
	return FileTail(p.LogFile, n)
}

// FileTail returns the last n lines of a file (at most the last 64 KiB).
func FileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
