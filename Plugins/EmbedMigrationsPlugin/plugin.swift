import Foundation
import PackagePlugin

/// Embeds one engine's migrations into its store target as a generated Swift source:
/// `migrations/sqlite/*.sql` into `OrderStore`, `migrations/postgresql/*.sql` into
/// `PostgresStore`, so the schema travels inside the binary (a binary copied alone to
/// a new machine can still create a fresh database) while `migrations/` stays its only source.
@main
struct EmbedMigrationsPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let engine = target.name == "PostgresStore" ? "postgresql" : "sqlite"
        let directory = context.package.directoryURL.appending(path: "migrations/\(engine)")
        let files = try FileManager.default
            .contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "sql" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedMigrations.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(files.count) migrations into \(target.name)",
                executable: try context.tool(named: "EmbedMigrations").url,
                arguments: [output.path, target.name] + files.map(\.path),
                inputFiles: files,
                outputFiles: [output]
            )
        ]
    }
}
