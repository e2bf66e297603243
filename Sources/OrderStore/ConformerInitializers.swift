/// Initializers another engine's conformer (`PostgresStore`) builds its answers with.

extension OrderRecord {
    /// A row as read by a conformer whose engine enforces the column types (nothing is unreadable).
    public init(
        id: Int64, mchID: String, appid: String, outTradeNo: String, subMchID: String?, subAppID: String?,
        createdAt: Int64, expiresAt: Int64?, state: OrderState?, attempts: Int, nextAttemptAt: Int64?,
        leaseExpiresAt: Int64?, errCode: String?, errCodeDes: String?, lastError: String?, closedAt: Int64?,
        updatedAt: Int64, tradeState: String?, transactionID: String?, totalFee: Int?, timeEnd: String?,
        tradeType: String?
    ) {
        (self.id, self.mchID, self.appid, self.outTradeNo, self.subMchID, self.subAppID) =
            (id, mchID, appid, outTradeNo, subMchID, subAppID)
        (self.createdAt, self.expiresAt, self.state, self.attempts, self.nextAttemptAt, self.leaseExpiresAt) =
            (createdAt, expiresAt, state, attempts, nextAttemptAt, leaseExpiresAt)
        (self.errCode, self.errCodeDes, self.lastError, self.closedAt, self.updatedAt) =
            (errCode, errCodeDes, lastError, closedAt, updatedAt)
        (self.tradeState, self.transactionID, self.totalFee, self.timeEnd, self.tradeType) =
            (tradeState, transactionID, totalFee, timeEnd, tradeType)
    }
}

extension StoreError {
    /// An error about the table at `location` (a path, or a URL without its password).
    public init(location: String, message: String) { self.init(path: location, message: message) }
}
