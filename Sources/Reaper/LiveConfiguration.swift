import ConfigurationFile
import Synchronization
import WeChatPayHTTP

/// The configuration in force and the client built from it; SIGHUP replaces both while
/// calls are in flight. Calls already started keep the client they began with.
public final class LiveConfiguration: Sendable {
    private let state: Mutex<(configuration: DaemonConfiguration, client: WeChatPayClient)>

    public init(configuration: DaemonConfiguration, client: WeChatPayClient) {
        state = Mutex((configuration, client))
    }

    public var configuration: DaemonConfiguration { state.withLock { $0.configuration } }
    public var client: WeChatPayClient { state.withLock { $0.client } }
    var current: (configuration: DaemonConfiguration, client: WeChatPayClient) { state.withLock { $0 } }

    /// Puts `new` in force. A new client is built only when the API settings changed; the
    /// client it replaces is returned, to be shut down once its calls can have finished.
    /// The database cannot change on reload.
    public func replace(
        with new: DaemonConfiguration, makeClient: (DaemonConfiguration) -> WeChatPayClient
    ) throws(ReloadError) -> WeChatPayClient? {
        let old = configuration
        guard new.database == old.database else {
            throw ReloadError(reason: "database cannot change while running (\(old.database) → \(new.database)): restart instead")
        }
        let client = new.api == old.api && new.reaper.concurrency == old.reaper.concurrency ? nil : makeClient(new)
        return state.withLock { state in
            let retired = client.map { _ in state.client }
            state.configuration = new
            if let client { state.client = client }
            return retired
        }
    }
}

/// Why a reloaded configuration was not put in force.
public struct ReloadError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}
