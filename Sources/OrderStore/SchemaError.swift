/// Why a database cannot be used by this build.
public enum SchemaError: Error, CustomStringConvertible {
    case newerThanThisBuild(databaseVersion: Int, knownVersion: Int)
    case notMigrated

    public var description: String {
        switch self {
        case .newerThanThisBuild(let databaseVersion, let knownVersion):
            "the database has schema version \(databaseVersion), but this closeorderd knows only up to "
                + "\(knownVersion): it was written by a newer closeorderd; upgrade closeorderd instead of using this one"
        case .notMigrated:
            "the database has no closeorderd schema yet: run `closeorderd migrate` (or `closeorderd run`) first"
        }
    }
}
