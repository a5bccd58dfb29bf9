// A minimal migration runner that behaves as Flyway does against PostgreSQL:
// versioned files V<n>__<name>.sql applied in order, each in its own
// transaction over pgjdbc's extended query protocol, recorded in a history
// table, and rolled back whole when any statement fails.
//
// usage: java -cp postgresql.jar:. MigrationRunner <jdbc-url> <user> <dir>
import java.nio.file.*;
import java.sql.*;
import java.util.*;
import java.util.regex.*;

public class MigrationRunner {
    private static final Pattern NAME = Pattern.compile("V(\\d+)__(.+)\\.sql");

    public static void main(String[] args) throws Exception {
        String url = args[0], user = args[1];
        Path dir = Paths.get(args[2]);
        TreeMap<Integer, Path> migrations = new TreeMap<>();
        try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "V*__*.sql")) {
            for (Path f : files) {
                Matcher m = NAME.matcher(f.getFileName().toString());
                if (m.matches()) migrations.put(Integer.parseInt(m.group(1)), f);
            }
        }
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("preferQueryMode", "extended");
        try (Connection c = DriverManager.getConnection(url, props)) {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE IF NOT EXISTS migration_history ("
                        + "version int PRIMARY KEY, script text NOT NULL, "
                        + "applied_at timestamptz NOT NULL DEFAULT now())");
            }
            c.commit();
            for (Map.Entry<Integer, Path> e : migrations.entrySet()) {
                if (applied(c, e.getKey())) continue;
                String script = e.getValue().getFileName().toString();
                try {
                    for (String sql : statements(Files.readString(e.getValue()))) {
                        try (Statement s = c.createStatement()) {
                            s.execute(sql);
                        }
                    }
                    try (PreparedStatement ps = c.prepareStatement(
                            "INSERT INTO migration_history (version, script) VALUES (?, ?)")) {
                        ps.setInt(1, e.getKey());
                        ps.setString(2, script);
                        ps.executeUpdate();
                    }
                    c.commit();
                    System.out.println("applied " + script);
                } catch (SQLException ex) {
                    c.rollback();
                    System.out.println("FAILED " + script + ": " + ex.getSQLState() + " " + ex.getMessage());
                    System.exit(1);
                }
            }
        }
    }

    private static boolean applied(Connection c, int version) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT 1 FROM migration_history WHERE version = ?")) {
            ps.setInt(1, version);
            try (ResultSet rs = ps.executeQuery()) {
                return rs.next();
            }
        }
    }

    // Statements end with ';' at the end of a line (enough for these files).
    private static List<String> statements(String text) {
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        for (String line : text.split("\n")) {
            if (line.trim().startsWith("--")) continue;
            cur.append(line).append('\n');
            if (line.trim().endsWith(";")) {
                out.add(cur.toString().trim().replaceAll(";$", ""));
                cur.setLength(0);
            }
        }
        if (cur.toString().trim().length() > 0) out.add(cur.toString().trim());
        return out;
    }
}
