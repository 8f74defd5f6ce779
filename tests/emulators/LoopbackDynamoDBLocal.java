// Launches DynamoDB Local bound to 127.0.0.1 only. Run by the emulator runner in source-file mode:
//   java -Djava.library.path=<dir>/DynamoDBLocal_lib -cp <dir>/DynamoDBLocal.jar LoopbackDynamoDBLocal.java <args>
//
// DynamoDB Local (3.x) has no bind-address option: its Jetty server listens on every interface. Test servers must
// listen on the loopback interface only, so this builds the server the way DynamoDB Local's own main does
// (ServerRunner.createServerFromCommandLineArgs), sets the host of its Jetty connectors to 127.0.0.1 and starts it.
// Everything goes through reflection so the file compiles with the JDK alone. Any failure exits non-zero rather than
// falling back to an all-interfaces server. Telemetry is never configured (ServerRunner.main is not called) and the
// runner passes -disableTelemetry as well.

import java.lang.reflect.Field;
import java.lang.reflect.Method;

public class LoopbackDynamoDBLocal {
    private static final String LOOPBACK = "127.0.0.1";

    public static void main(String[] args) {
        try {
            Class<?> runner = Class.forName("software.amazon.dynamodb.services.local.main.ServerRunner");
            Object proxy = runner.getMethod("createServerFromCommandLineArgs", String[].class).invoke(null, (Object) args);
            Field serverField = proxy.getClass().getDeclaredField("server");
            serverField.setAccessible(true);
            Object server = serverField.get(proxy);
            Object[] connectors = (Object[]) server.getClass().getMethod("getConnectors").invoke(server);
            if (connectors.length == 0) {
                throw new IllegalStateException("DynamoDB Local's Jetty server has no connector");
            }
            for (Object connector : connectors) {
                Method setHost = connector.getClass().getMethod("setHost", String.class);
                setHost.invoke(connector, LOOPBACK);
            }
            proxy.getClass().getMethod("start").invoke(proxy);
            for (Object connector : connectors) {
                Object host = connector.getClass().getMethod("getHost").invoke(connector);
                if (!LOOPBACK.equals(host)) {
                    throw new IllegalStateException("connector host is " + host + ", not " + LOOPBACK);
                }
            }
            System.out.println("DynamoDB Local listening on " + LOOPBACK + " (args: " + String.join(" ", args) + ")");
        } catch (Throwable e) {
            Throwable cause = e instanceof java.lang.reflect.InvocationTargetException && e.getCause() != null ? e.getCause() : e;
            System.err.println("LoopbackDynamoDBLocal: could not start DynamoDB Local on " + LOOPBACK + ": " + cause);
            cause.printStackTrace();
            System.exit(1);
        }
    }
}
