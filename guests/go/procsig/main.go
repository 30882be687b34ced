// procsig: os/exec and os/signal. The program runs itself as a child (the only riscv64
// program it knows is its own; under vmx its directory must be granted with --dir), through pipes, with an exit status and an environment, and
// receives signals through signal.Notify: one it sends itself, one from its child, SIGCHLD,
// and a signal.Ignore'd one. Its output must be the same under qemu-riscv64 and vmx.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func child(mode string) {
	switch mode {
	case "echo":
		var b bytes.Buffer
		b.ReadFrom(os.Stdin)
		fmt.Print(strings.ToUpper(b.String()))
		fmt.Fprintln(os.Stderr, "child env:", os.Getenv("PROCSIG_VALUE"))
	case "exit":
		os.Exit(7)
	case "kill-parent":
		syscall.Kill(os.Getppid(), syscall.SIGUSR2)
	case "sleep":
		time.Sleep(20 * time.Second)
	}
}

func wait(c <-chan os.Signal, what string) {
	select {
	case s := <-c:
		fmt.Println(what, "got", s)
	case <-time.After(20 * time.Second):
		fmt.Println(what, "timed out")
	}
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "child" {
		child(os.Args[2])
		return
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Println("executable:", err)
		return
	}

	cmd := exec.Command(self, "child", "echo")
	cmd.Stdin = strings.NewReader("through a pipe\n")
	cmd.Env = append(os.Environ(), "PROCSIG_VALUE=42")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	fmt.Printf("echo: %q %q %v\n", out, stderr.String(), err)

	err = exec.Command(self, "child", "exit").Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		fmt.Println("exit status:", ee.ExitCode())
	}

	_, err = exec.Command(filepath.Join(filepath.Dir(self), "no-such-program")).Output()
	fmt.Println("missing program:", err)

	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	wait(usr1, "self SIGUSR1")

	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	if err := exec.Command(self, "child", "kill-parent").Run(); err != nil {
		fmt.Println("kill-parent:", err)
	}
	wait(usr2, "SIGUSR2 from the child")

	chld := make(chan os.Signal, 4)
	signal.Notify(chld, syscall.SIGCHLD)
	exec.Command(self, "child", "exit").Run()
	wait(chld, "SIGCHLD")
	signal.Stop(chld)

	signal.Ignore(syscall.SIGHUP)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	fmt.Println("SIGHUP ignored")

	// A SIGTERM sent right after exec.Cmd.Start races with the child's execve (Start
	// returns once the close-on-exec pipe is closed, before the new image runs): it must
	// end the child every time. Repeated, since a lost signal used to show up about one
	// run in ten.
	terminated := 0
	for i := 0; i < 20; i++ {
		sl := exec.Command(self, "child", "sleep")
		if err := sl.Start(); err != nil {
			fmt.Println("start:", err)
			continue
		}
		sl.Process.Signal(syscall.SIGTERM)
		err = sl.Wait()
		if err != nil && err.Error() == "signal: terminated" {
			terminated++
		} else {
			fmt.Println("child", i, "not terminated:", err)
		}
	}
	fmt.Println("children terminated by SIGTERM right after Start:", terminated, "of 20")
}
