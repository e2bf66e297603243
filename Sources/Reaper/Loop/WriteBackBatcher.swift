import OrderStore

/// Group commit for write-backs: records that arrive while a transaction is being written
/// wait and go together in the next one, so that many calls finishing at once cost one
/// commit, not one each. If a batch fails, its records are written one by one, so that a
/// problem with one record fails only that record.
actor WriteBackBatcher {
    let store: any OrderTable
    private var pending: [(record: AttemptRecord, done: CheckedContinuation<Result<WriteBackResult, StoreError>, Never>)] = []
    private var flushing = false

    init(store: any OrderTable) { self.store = store }

    /// Writes `record` back in the next transaction and returns what became of it.
    func write(_ record: AttemptRecord) async -> Result<WriteBackResult, StoreError> {
        await withCheckedContinuation { done in
            pending.append((record, done))
            if !flushing {
                flushing = true
                Task { await flush() }
            }
        }
    }

    private func flush() async {
        while !pending.isEmpty {
            let batch = pending
            pending.removeAll()
            do {
                let results = try await store.record(batch.map(\.record))
                for (entry, result) in zip(batch, results) { entry.done.resume(returning: .success(result)) }
            } catch {
                if batch.count == 1 {
                    batch[0].done.resume(returning: .failure(error))
                    continue
                }
                for entry in batch {
                    do {
                        let result = try await store.record([entry.record])
                        entry.done.resume(returning: .success(result[0]))
                    } catch {
                        entry.done.resume(returning: .failure(error))
                    }
                }
            }
        }
        flushing = false
    }
}
