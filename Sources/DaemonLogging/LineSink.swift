import Foundation

/// Log lines on their way to a file descriptor (stderr). A line below `warning` waits in a
/// buffer for at most `delay` and leaves with the lines logged meanwhile in one `write`, so
/// that a busy daemon does not pay a system call (and a journal wake-up) per line; a warning
/// or worse leaves at once, after everything buffered before it, so that lines keep their
/// order. `flush()` empties the buffer; the process flushes it when it exits normally
/// (`exit`), and a crash loses at most `delay` of lines below `warning`.
public final class LineSink: @unchecked Sendable {
    /// The daemon's standard error.
    public static let standardError: LineSink = {
        let sink = LineSink(fileDescriptor: STDERR_FILENO)
        atexit { LineSink.standardError.flush() }
        return sink
    }()

    let fileDescriptor: Int32
    let delay: Duration
    /// A buffer this large is written at once, whatever the delay.
    let capacity: Int
    // Guards `buffer` and `flusherStarted`, and orders writes: a write happens with it held.
    private let condition = NSCondition()
    private var buffer: [UInt8] = []
    private var flusherStarted = false

    public init(fileDescriptor: Int32, delay: Duration = .milliseconds(50), capacity: Int = 64 * 1024) {
        self.fileDescriptor = fileDescriptor
        self.delay = delay
        self.capacity = capacity
    }

    /// Adds one line (newline included); `urgent` writes it, and all before it, at once.
    public func append(_ line: String, urgent: Bool) {
        condition.lock()
        defer { condition.unlock() }
        let wasEmpty = buffer.isEmpty
        buffer.append(contentsOf: line.utf8)
        if urgent || buffer.count >= capacity {
            writeBuffer()
        } else if !flusherStarted {
            flusherStarted = true
            let thread = Thread { [self] in flushForever() }
            thread.name = "closeorderd-log"
            thread.start()
        } else if wasEmpty {
            condition.signal()
        }
    }

    /// Writes whatever is buffered now.
    public func flush() {
        condition.lock()
        defer { condition.unlock() }
        writeBuffer()
    }

    /// The flusher thread: sleeps until a line arrives, lets `delay` pass so that more
    /// lines join it, then writes them together.
    private func flushForever() {
        let pause = delay.components
        var interval = timespec(tv_sec: Int(pause.seconds), tv_nsec: Int(pause.attoseconds / 1_000_000_000))
        while true {
            condition.lock()
            while buffer.isEmpty { condition.wait() }
            condition.unlock()
            nanosleep(&interval, nil)
            flush()
        }
    }

    /// Called with `condition` held. A descriptor that refuses bytes (closed, full and
    /// non-blocking) loses them: logging never stops the daemon.
    private func writeBuffer() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
        buffer.removeAll(keepingCapacity: buffer.count <= capacity)
    }
}
