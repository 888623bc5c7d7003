// How a process notices that the process which started it is gone, even when that one was
// SIGKILLed and could not pass a signal on.

// A child started with an IPC channel (`npm start` starts its apps that way) sees the channel close
// when its parent dies, however it died. Processes started without one (Docker, systemd, a shell)
// have nothing to watch: their supervisor signals them.
export const onParentGone = (callback: () => void) => {
  if (!process.channel) return;
  process.once("disconnect", callback);
};

// For a process whose parent offers no channel (`npm start` runs local-stack as a plain child): a
// changed parent pid means we were re-parented, i.e. the parent exited. npm does not pass SIGHUP
// on, and a SIGKILLed npm passes nothing.
export const watchParentPid = (callback: () => void, everyMs = 500) => {
  const original = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === original) return;
    clearInterval(timer);
    callback();
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
};
