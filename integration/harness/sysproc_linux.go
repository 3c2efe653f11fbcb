package harness

import "syscall"

// sysProcAttr makes the kernel kill a server if the process that started it
// dies first (a test binary killed by -timeout leaves no server behind).
// Strictly, Pdeathsig fires when the OS thread that started the child exits;
// the Go runtime only ends a thread when a goroutine exits while locked to it
// with runtime.LockOSThread, which neither the harness nor testing does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
