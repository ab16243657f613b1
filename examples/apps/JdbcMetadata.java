// pgJDBC's DatabaseMetaData against raftable: what JDBC tools (DBeaver, Metabase, DataGrip,
// any JDBC schema browser) read to show a schema. A parent and a child table with a foreign key,
// a unique column, a two-column index (one column descending) and column defaults; getTables,
// getColumns (types, nullability, defaults, autoincrement), getPrimaryKeys, getImportedKeys /
// getExportedKeys, getIndexInfo must give the answers PostgreSQL gives (this program passes
// against PostgreSQL 15).
//
// Usage: java -cp postgresql.jar JdbcMetadata.java JDBC_URL USER [PASSWORD]
// Exits non-zero (with the failing step) on any difference.

import java.sql.*;
import java.util.*;

public class JdbcMetadata {
    static void step(String name) {
        System.out.println("step: " + name);
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    /** The rows of `rs`, each the named columns' values as strings. */
    static List<List<String>> rows(ResultSet rs, String... columns) throws SQLException {
        List<List<String>> out = new ArrayList<>();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (String c : columns) {
                row.add(rs.getString(c));
            }
            out.add(row);
        }
        rs.close();
        return out;
    }

    public static void main(String[] args) throws Exception {
        String password = args.length > 2 ? args[2] : "";
        try (Connection conn = DriverManager.getConnection(args[0], args[1], password)) {
            Statement st = conn.createStatement();
            st.execute("DROP TABLE IF EXISTS jm_child");
            st.execute("DROP TABLE IF EXISTS jm_parent");
            st.execute("CREATE TABLE jm_parent (id SERIAL PRIMARY KEY, code TEXT NOT NULL UNIQUE)");
            st.execute("CREATE TABLE jm_child (id BIGINT PRIMARY KEY, parent_id INT REFERENCES jm_parent (id)"
                    + " ON DELETE CASCADE, qty INT DEFAULT 0, note VARCHAR(20))");
            st.execute("CREATE INDEX jm_child_qty_note ON jm_child (qty, note DESC)");
            DatabaseMetaData md = conn.getMetaData();

            step("getTables");
            List<List<String>> tables = rows(md.getTables(null, "public", "jm_%", new String[] {"TABLE"}),
                    "TABLE_NAME", "TABLE_TYPE");
            check(tables.equals(List.of(List.of("jm_child", "TABLE"), List.of("jm_parent", "TABLE"))),
                    "tables " + tables);

            step("getColumns");
            List<List<String>> columns = rows(md.getColumns(null, "public", "jm_child", "%"),
                    "COLUMN_NAME", "TYPE_NAME", "COLUMN_SIZE", "IS_NULLABLE", "COLUMN_DEF", "IS_AUTOINCREMENT");
            List<List<String>> expected = new ArrayList<>();
            expected.add(Arrays.asList("id", "int8", "19", "NO", null, "NO"));
            expected.add(Arrays.asList("parent_id", "int4", "10", "YES", null, "NO"));
            expected.add(Arrays.asList("qty", "int4", "10", "YES", "0", "NO"));
            expected.add(Arrays.asList("note", "varchar", "20", "YES", null, "NO"));
            check(columns.equals(expected), "child columns " + columns);
            List<List<String>> serial = rows(md.getColumns(null, "public", "jm_parent", "id"),
                    "COLUMN_NAME", "TYPE_NAME", "COLUMN_DEF", "IS_AUTOINCREMENT");
            check(serial.equals(List.of(List.of("id", "serial", "nextval('jm_parent_id_seq'::regclass)", "YES"))),
                    "parent id " + serial);

            step("getPrimaryKeys");
            List<List<String>> keys = rows(md.getPrimaryKeys(null, "public", "jm_child"),
                    "COLUMN_NAME", "KEY_SEQ", "PK_NAME");
            check(keys.equals(List.of(List.of("id", "1", "jm_child_pkey"))), "primary key " + keys);

            step("getImportedKeys and getExportedKeys");
            String[] fk = {"PKTABLE_NAME", "PKCOLUMN_NAME", "FKTABLE_NAME", "FKCOLUMN_NAME", "KEY_SEQ",
                "UPDATE_RULE", "DELETE_RULE", "FK_NAME", "PK_NAME"};
            List<String> key = List.of("jm_parent", "id", "jm_child", "parent_id", "1",
                    String.valueOf(DatabaseMetaData.importedKeyNoAction),
                    String.valueOf(DatabaseMetaData.importedKeyCascade), "jm_child_parent_id_fkey", "jm_parent_pkey");
            List<List<String>> imported = rows(md.getImportedKeys(null, "public", "jm_child"), fk);
            check(imported.equals(List.of(key)), "imported " + imported);
            List<List<String>> exported = rows(md.getExportedKeys(null, "public", "jm_parent"), fk);
            check(exported.equals(List.of(key)), "exported " + exported);

            step("getIndexInfo");
            List<List<String>> indexes = rows(md.getIndexInfo(null, "public", "jm_child", false, false),
                    "INDEX_NAME", "NON_UNIQUE", "ORDINAL_POSITION", "COLUMN_NAME", "ASC_OR_DESC");
            List<List<String>> expectedIndexes = List.of(
                    List.of("jm_child_pkey", "f", "1", "id", "A"),
                    List.of("jm_child_qty_note", "t", "1", "qty", "A"),
                    List.of("jm_child_qty_note", "t", "2", "note", "D"));
            check(indexes.equals(expectedIndexes), "child indexes " + indexes);
            List<List<String>> unique = rows(md.getIndexInfo(null, "public", "jm_parent", true, false),
                    "INDEX_NAME", "NON_UNIQUE", "COLUMN_NAME");
            check(unique.equals(List.of(List.of("jm_parent_code_key", "f", "code"),
                    List.of("jm_parent_pkey", "f", "id"))), "parent unique indexes " + unique);

            step("drop");
            st.execute("DROP TABLE jm_child");
            st.execute("DROP TABLE jm_parent");
        }
        System.out.println("jdbc metadata: ok");
    }
}
